"""Measure what torch.compile costs a job, cold and again, on this machine (compile forced on).

Each architecture (the reference MLP, the default CNN) is trained for one epoch of Fashion-MNIST:

1. in a first process with an empty compile cache: the first job (compiles from scratch), then
   a second job of the same architecture (reuses the first one's compiled step in memory);
2. in a second process with the same cache folder: one job per architecture (loads the
   compiled kernels from the disk cache, but traces again).

It prints each job's ``acceleration.compile`` report (compile_seconds: the first step's time
over the second's) and the ratios. From the repository root:

    .venv/bin/python -m scripts.compile_cache_bench
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

ARCHITECTURES: dict[str, dict[str, Any]] = {
    "reference MLP (784-128-10)": {"arch": "mlp", "hidden_sizes": [128]},
    "default CNN ([24, 48], fc 128)": {"arch": "cnn"},
}

JOBS = """
import json, sys
from pathlib import Path
from taas.app.spec import JobSpec
from taas.worker.trainer.compiled import use_disk_cache
from taas.worker.trainer.data import load_dataset
from taas.worker.trainer.loop import train
from tests.worker.trainer.fakes import RecordingContext

use_disk_cache(Path(sys.argv[1]))
for model in json.loads(sys.argv[2]):
    spec = JobSpec.model_validate({"dataset": "fashion_mnist", "device": "cpu", "model": model,
        "training": {"epochs": 1}, "acceleration": {"compile": True}})
    result = train(spec, load_dataset(spec, None), RecordingContext())
    print(json.dumps(result.acceleration["compile"]), flush=True)
"""


def jobs_in_a_new_process(home: Path, models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    command = [sys.executable, "-c", JOBS, str(home), json.dumps(models)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(done.stderr[-4000:])
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="taas-compile-bench-") as folder:
        home = Path(folder)
        models = list(ARCHITECTURES.values())
        first_process = jobs_in_a_new_process(home, [m for m in models for _ in range(2)])
        second_process = jobs_in_a_new_process(home, models)
    print(f"torch {torch.__version__}, {os.cpu_count()} cores, compile forced on the CPU")
    print("| architecture | job | ran | cache | compile s | vs first |")
    print("|---|---|---|---|---:|---:|")
    for index, name in enumerate(ARCHITECTURES):
        cold, again = first_process[2 * index], first_process[2 * index + 1]
        warm = second_process[index]
        rows = [
            ("1st, new process, empty cache", cold),
            ("2nd, same process", again),
            ("1st, new process, warm cache", warm),
        ]
        for label, report in rows:
            ratio = report["compile_seconds"] / cold["compile_seconds"]
            print(
                f"| {name} | {label} | {report['ran']} | {report['cache']} "
                f"| {report['compile_seconds']:.2f} "
                f"| {ratio:.3f} |"
            )


if __name__ == "__main__":
    main()
