"""A failed request as the CLI says it: the server's real 422 answers one line per field with a
did-you-mean, and the other failures one sentence each, never a traceback."""

from __future__ import annotations

import subprocess
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from taas.app.cli.errors import Target, explain
from taas.errors import ApiError
from tests.e2e.processes import base_env, free_port, taas_command

TARGET = Target("http://127.0.0.1:8000", "/home/me/.taas/api_key")


def refusal(api: TestClient, auth: dict[str, str], spec: dict[str, Any]) -> list[str]:
    """What the CLI prints when the in-process server refuses ``spec``."""
    response = api.post("/v1/jobs", json=spec, headers=auth)
    assert response.status_code == 422, response.text
    return explain(
        ApiError.from_response(response), Target(TARGET.api_url, "", spec=spec)
    ).splitlines()


def test_a_refused_spec_is_one_line_per_field(api: TestClient, auth: dict[str, str]) -> None:
    lines = refusal(api, auth, {"dataset": "synthetic", "training": {"lr": 0, "epocs": 3}})

    assert lines == [
        "the server refused the job spec (HTTP 422):",
        "  training.lr: Input should be greater than 0",
        "  training.epocs: unknown field; did you mean `epochs`?",
    ]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"dataset": "fashion_mnst"}, "did you mean `fashion_mnist`?"),
        ({"datset": "mnist"}, "  datset: unknown field; did you mean `dataset`?"),
        (
            {"dataset": "mnist", "model": {"arch": "cnn", "activaton": "relu"}},
            "  model.activaton: unknown field; did you mean `activation`?",
        ),
        (
            {"dataset": "mnist", "model": {"arch": "cnn", "pooling": "maz"}},
            "  model.pooling: Input should be 'max' or 'avg'; did you mean `max`?",
        ),
        ({"dataset": "mnist", "model": {"arch": "resnt"}}, "did you mean `resnet`?"),
        (
            {"dataset": "mnist", "training": {"optimizer": "adamw2"}},
            "did you mean `adamw`?",
        ),
        (
            {"dataset": "mnist", "acceleration": {"compil": True}},
            "  acceleration.compil: unknown field; did you mean `compile`?",
        ),
    ],
)
def test_a_near_miss_gets_a_did_you_mean(
    api: TestClient, auth: dict[str, str], spec: dict[str, Any], expected: str
) -> None:
    lines = refusal(api, auth, spec)

    assert any(line == expected or line.endswith(expected) for line in lines), lines


def test_a_far_miss_gets_no_guess(api: TestClient, auth: dict[str, str]) -> None:
    lines = refusal(api, auth, {"dataset": "imagenet"})

    assert "did you mean" not in "\n".join(lines)
    assert "unknown dataset" in lines[1]


def test_a_refused_key_says_where_the_key_came_from() -> None:
    answer = httpx.Response(401, json={"detail": "invalid or revoked API key"})

    message = explain(ApiError.from_response(answer), TARGET)

    assert message.startswith("the API key was refused (invalid or revoked API key)")
    assert "the key saved in /home/me/.taas/api_key by `taas serve`" in message
    assert "TAAS_API_KEY" in message


def test_a_message_that_names_its_field_is_not_prefixed_with_it_again() -> None:
    detail = [
        {"loc": ["body", "parameters", "training.lrr"], "msg": "parameter 'training.lrr': a job "
         "spec has no field 'training.lrr'", "type": "value_error"},
        {"loc": ["body", "max_trials"], "msg": "Input should be greater than 0", "type": "x"},
    ]  # fmt: skip
    answer = httpx.Response(422, json={"detail": detail})

    message = explain(ApiError.from_response(answer), TARGET)

    assert message.splitlines()[1:] == [
        "  parameter 'training.lrr': a job spec has no field 'training.lrr'",
        "  max_trials: Input should be greater than 0",
    ]


def test_an_unknown_job_is_named() -> None:
    answer = httpx.Response(404, json={"detail": "job 'job_x' not found"})

    message = explain(
        ApiError.from_response(answer), Target(TARGET.api_url, "TAAS_API_KEY", job_id="job_x")
    )

    assert message.startswith("unknown job job_x:")


def test_an_unreachable_server_is_one_line_that_says_what_to_do(tmp_path: Any) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = base_env(tmp_path, TAAS_API_URL=url, TAAS_API_KEY="taas_anything")

    result = subprocess.run(
        taas_command("status", "job_x"), env=env, capture_output=True, text=True, check=False
    )

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"cannot reach the taas API at {url} (connection refused): is `taas serve` running? "
        "set TAAS_API_URL to point elsewhere\n"
    )
