"""torch.compile paid once per architecture (worker/trainer/compiled.py), with compile forced on
this CPU: the second job of an architecture in a process reuses what the first compiled, a new
process loads it from the disk cache, and a process that meets more architectures than dynamo's
recompile limit allows never runs one eagerly while saying "compile"."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch._dynamo

from taas.worker.trainer.compiled import ARCHITECTURES, CompiledArchitectures, use_disk_cache
from taas.worker.trainer.data import load_dataset
from taas.worker.trainer.loop import train
from tests.worker.trainer.fakes import RecordingContext, tiny_spec

ROOT = Path(__file__).resolve().parents[3]
compile_warnings = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


@pytest.fixture(autouse=True)
def fresh_dynamo(tmp_path: Path) -> Iterator[None]:
    """Each test starts with nothing compiled in memory and an empty disk cache of its own."""
    torch._dynamo.reset()
    ARCHITECTURES.keys.clear()
    use_disk_cache(tmp_path / "home")
    yield
    torch._dynamo.reset()
    ARCHITECTURES.keys.clear()


# Inductor's CPU kernels are built for a number of threads, which is part of its cache key: a
# fixed count, not the free cores of the moment (another test process may be busy).
COMPILED = {"compile": True, "threads": 1}


def compiled_job(hidden: int, context: RecordingContext | None = None) -> dict[str, Any]:
    job = tiny_spec(
        model={"arch": "mlp", "hidden_sizes": [hidden]}, acceleration=COMPILED, epochs=1
    )
    result = train(job, load_dataset(job, None), context or RecordingContext())
    assert "compile" in result.acceleration["applied"]  # type: ignore[operator]
    report: dict[str, Any] = result.acceleration["compile"]  # type: ignore[assignment]
    return report


@compile_warnings
def test_the_second_job_of_an_architecture_reuses_the_first_ones_compiled_step() -> None:
    first = compiled_job(hidden=37)
    context = RecordingContext()
    second = compiled_job(hidden=37, context=context)
    print(f"compile seconds: first job {first['compile_seconds']}, second {second}")
    assert (first["ran"], first["cache"]) == ("compiled", "none")
    assert first["graph_cache_misses"] > 0
    assert (second["ran"], second["cache"]) == ("compiled", "memory")
    assert second["compile_seconds"] < first["compile_seconds"] / 3
    assert any("torch.compile: the step ran compiled" in line for line in context.messages)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@compile_warnings
def test_on_cuda_the_second_job_reuses_the_compiled_step_and_its_cuda_graphs() -> None:
    job = tiny_spec(model={"arch": "mlp", "hidden_sizes": [41]}, epochs=2).model_copy(
        update={"device": "cuda"}
    )
    reports = []
    for _ in range(2):
        result = train(job, load_dataset(job, None), RecordingContext())
        assert {"compile", "cuda_graphs"} <= set(result.acceleration["applied"])  # type: ignore[arg-type]
        reports.append(result.acceleration["compile"])
    first, second = reports
    print(f"compile seconds on cuda: first job {first}, second {second}")
    assert (first["ran"], first["cache"]) == ("compiled", "none")  # type: ignore[index]
    assert (second["ran"], second["cache"]) == ("compiled", "memory")  # type: ignore[index]
    assert second["compile_seconds"] < first["compile_seconds"] / 3  # type: ignore[index,operator]


@pytest.mark.slow
@compile_warnings
def test_more_architectures_than_the_recompile_limit_allows_all_run_compiled() -> None:
    # A limit of 2 leaves room for one architecture at a time (8, the default, for four): each
    # new one resets dynamo, and one seen before comes back from the disk cache.
    with torch._dynamo.config.patch(recompile_limit=2):
        reports = [compiled_job(hidden) for hidden in (11, 12, 13, 11)]
    assert [report["ran"] for report in reports] == ["compiled"] * 4
    assert [report["cache"] for report in reports] == ["none", "none", "none", "disk"]


@compile_warnings
def test_a_step_that_dynamo_refuses_to_compile_is_reported_as_eager(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What the bookkeeping prevents, forced: more architectures kept than the limit holds.
    monkeypatch.setattr(CompiledArchitectures, "limit", staticmethod(lambda: 10))
    with torch._dynamo.config.patch(recompile_limit=1):
        assert compiled_job(hidden=21)["ran"] == "compiled"
        refused = compiled_job(hidden=22)
    assert refused["ran"] == "eager"
    assert "recompile limit" in refused["reason"]


PROBE = """
import json, sys
from pathlib import Path
from taas.worker.trainer.compiled import use_disk_cache
from taas.worker.trainer.data import load_dataset
from taas.worker.trainer.loop import train
from tests.worker.trainer.fakes import RecordingContext, tiny_spec
use_disk_cache(Path(sys.argv[1]))
job = tiny_spec(model={"arch": "mlp", "hidden_sizes": [29]},
                acceleration={"compile": True, "threads": 1}, epochs=1)
print(json.dumps(train(job, load_dataset(job, None), RecordingContext()).acceleration["compile"]))
"""


@pytest.mark.slow
@compile_warnings
def test_a_new_worker_process_loads_the_compiled_step_from_the_disk_cache(
    tmp_path: Path,
) -> None:
    def job_in_a_new_process() -> dict[str, Any]:
        command = [sys.executable, "-c", PROBE, str(tmp_path / "shared-home")]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return report

    cold, warm = job_in_a_new_process(), job_in_a_new_process()
    print(f"compile seconds in a new process: cold cache {cold}, warm {warm}")
    assert (cold["cache"], warm["cache"]) == ("none", "disk")
    assert warm["graph_cache_misses"] == 0
    assert warm["compile_seconds"] < cold["compile_seconds"]
    assert list((tmp_path / "shared-home" / "cache" / "compile").glob("torch-*"))
