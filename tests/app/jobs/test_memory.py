"""The memory estimate: it grows with what costs memory, errs high against a measured peak, and
refuses at submit, over HTTP, a spec no worker could hold."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from taas.app.core.config import get_settings
from taas.app.jobs.memory import GIB, estimate_memory
from taas.app.spec import JobSpec, dataset_info

ROOT = Path(__file__).resolve().parents[3]


def estimate_total(model: dict[str, Any], **training: Any) -> int:
    spec = JobSpec.model_validate(
        {"dataset": "fashion_mnist", "model": model, "training": training}
    )
    return estimate_memory(spec, dataset_info(spec), device="cpu").total


@pytest.mark.parametrize(
    "model",
    [{"arch": "mlp"}, {"arch": "cnn"}, {"arch": "resnet", "widths": [16, 32]}],
    ids=["mlp", "cnn", "resnet"],
)
def test_the_estimate_grows_with_the_batch_size(model: dict[str, Any]) -> None:
    totals = [estimate_total(model, batch_size=size) for size in (256, 4096, 65536)]
    assert totals[0] < totals[1] < totals[2]


def test_the_estimate_grows_with_the_widths_and_the_optimizer_state() -> None:
    narrow = estimate_total({"arch": "cnn", "channels": [32, 64]}, batch_size=2048)
    wide = estimate_total({"arch": "cnn", "channels": [256, 512]}, batch_size=2048)
    assert narrow < wide
    big_mlp = {"arch": "mlp", "hidden_sizes": [4096, 4096]}
    adam = estimate_total(big_mlp, optimizer="adam")
    sgd = estimate_total(big_mlp, optimizer="sgd", momentum=0.0)
    # Adam keeps two fp32 states per weight, plain sgd none: 20.0M weights, 8 bytes each.
    assert adam - sgd == pytest.approx(8 * 20_037_642)


@pytest.mark.slow
def test_the_estimate_errs_high_but_within_its_calibration_of_a_measured_peak() -> None:
    # A convnet wide enough that its activations, not the framework, dominate the peak.
    spec = JobSpec.model_validate(
        {
            "dataset": "synthetic",
            "dataset_options": {"shape": [1, 28, 28], "train_size": 1024, "test_size": 200},
            "model": {"arch": "cnn", "channels": [128, 128]},
            "training": {"batch_size": 512, "epochs": 1},
            "device": "cpu",
        }
    )
    command = [sys.executable, "scripts/memory_estimate.py", "--measure", spec.model_dump_json()]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    measured = json.loads(done.stdout.strip().splitlines()[-1])

    estimate = estimate_memory(spec, dataset_info(spec), device="cpu", amp=measured["amp"])
    assert measured["peak"] <= estimate.total <= 2 * measured["peak"]


def limit(monkeypatch: pytest.MonkeyPatch, **values: int) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, str(value))
    get_settings.cache_clear()


def test_a_spec_no_worker_could_hold_is_refused_at_submit_naming_estimate_and_remedy(
    api: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The spec measured to kill its worker in an 8 GiB cgroup, against 8 GiB workers.
    body = {
        "dataset": "fashion_mnist",
        "model": {"arch": "cnn", "channels": [1024, 1024]},
        "training": {"batch_size": 4096},
    }
    limit(monkeypatch, TAAS_MAX_WORKER_MEMORY_BYTES=8 * GIB)

    response = api.post("/v1/jobs", json=body, headers=auth)

    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "training", "batch_size"]
    message = error["msg"]
    assert "training.batch_size=4096" in message
    assert "about 50.0 GiB of cpu memory" in message
    assert "8.0 GiB, TAAS_MAX_WORKER_MEMORY_BYTES" in message
    # At 8 GiB no batch size is small enough: evaluating in batches of 2000 alone needs more.
    assert "use a narrower model" in message
    assert "evaluating it alone needs 11.2 GiB" in message
    assert api.get("/v1/jobs", headers=auth).json()["items"] == []


def test_the_advised_batch_size_is_accepted(
    api: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    limit(monkeypatch, TAAS_MAX_WORKER_MEMORY_BYTES=64 * GIB, TAAS_MAX_BATCH_SIZE=8192)
    body: dict[str, Any] = {
        "dataset": "fashion_mnist",
        "model": {"arch": "cnn", "channels": [1024, 1024]},
        "training": {"batch_size": 8192},
    }
    refused = api.post("/v1/jobs", json=body, headers=auth)
    assert refused.status_code == 422
    advised = int(refused.json()["detail"][0]["msg"].split("at most ")[1].split()[0])

    body["training"]["batch_size"] = advised
    assert api.post("/v1/jobs", json=body, headers=auth).status_code == 201


def test_a_gpu_job_is_checked_against_the_largest_gpu(
    api: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    body = {"dataset": "cifar10", "model": {"arch": "resnet"}, "device": "cuda"}
    assert api.post("/v1/jobs", json=body, headers=auth).status_code == 201
    limit(monkeypatch, TAAS_MAX_GPU_MEMORY_BYTES=2 * GIB)

    response = api.post("/v1/jobs", json=body, headers=auth)

    assert response.status_code == 422
    assert "of cuda memory" in response.text
    assert "TAAS_MAX_GPU_MEMORY_BYTES" in response.text


JOB_EXAMPLES = sorted(
    path for path in (ROOT / "examples").glob("*.json") if not path.name.startswith("sweep_")
)


@pytest.mark.parametrize("example", JOB_EXAMPLES, ids=str)
def test_the_examples_fit_the_default_limits(
    api: TestClient, auth: dict[str, str], example: Path
) -> None:
    body = json.loads(example.read_text())
    assert api.post("/v1/jobs", json=body, headers=auth).status_code == 201
