"""Print the memory estimate (app/jobs/memory.py) of a few specs against the peak measured
training them.

Each spec trains for one epoch in a fresh process (so one spec's peak does not hide another's),
on synthetic data of the shape and size given; the peak is the process's resident set high-water
mark on CPU (ru_maxrss), or on CUDA the allocator's peak plus the CUDA context (what the GPU's
free memory loses). Usage: ``python scripts/memory_estimate.py [--device cpu|cuda]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from typing import Any

from taas.app.jobs.memory import estimate_memory, format_bytes
from taas.app.spec import JobSpec, dataset_info

FASHION_SIZED = {"shape": [1, 28, 28], "train_size": 60000, "test_size": 10000}
SPECS: dict[str, dict[str, Any]] = {
    "default cnn, batch 256, 70k images": {"model": {"arch": "cnn"}, "data": FASHION_SIZED},
    "reference mlp, batch 128, 70k images": {
        "model": {"arch": "mlp", "hidden_sizes": [128]},
        "training": {"batch_size": 128, "optimizer": "adam", "lr": 0.001},
        "data": FASHION_SIZED,
    },
    "mlp [4096, 4096], batch 4096": {
        "model": {"arch": "mlp", "hidden_sizes": [4096, 4096]},
        "training": {"batch_size": 4096},
        "data": {"shape": [1, 28, 28], "train_size": 4096, "test_size": 1000},
    },
    "resnet [64, 128, 256], batch 256": {
        "model": {"arch": "resnet"},
        "training": {"batch_size": 256},
        "data": {"shape": [1, 28, 28], "train_size": 512, "test_size": 500},
    },
    "cnn [256, 256] batch_norm, batch 1024, sgd": {
        "model": {"arch": "cnn", "channels": [256, 256], "batch_norm": True},
        "training": {"batch_size": 1024, "optimizer": "sgd"},
        "data": {"shape": [1, 28, 28], "train_size": 1024, "test_size": 200},
    },
    "cnn [1024, 1024], batch 512": {
        "model": {"arch": "cnn", "channels": [1024, 1024]},
        "training": {"batch_size": 512},
        "data": {"shape": [1, 28, 28], "train_size": 512, "test_size": 100},
    },
    "cnn [1024, 1024], batch 64, evaluating 2000 images": {
        "model": {"arch": "cnn", "channels": [1024, 1024]},
        "training": {"batch_size": 64},
        "data": {"shape": [1, 28, 28], "train_size": 64, "test_size": 2000},
    },
}


def job_spec(entry: dict[str, Any], device: str) -> JobSpec:
    return JobSpec.model_validate(
        {
            "dataset": "synthetic",
            "dataset_options": entry["data"],
            "model": entry["model"],
            "training": {"epochs": 1, **entry.get("training", {})},
            "device": device,
        }
    )


class _Quiet:
    """A TrainContext that keeps nothing: the measurement is of training alone."""

    def report_metrics(self, point: object) -> None:
        pass

    def report_progress(self, epoch: int, batches_done: int, batches: int, samples: int) -> None:
        pass

    def report_step(self, point: object) -> None:
        pass

    def report_start(self, device: str, acceleration: dict[str, object]) -> None:
        pass

    def should_prune(self) -> bool:
        return False

    def should_stop(self) -> bool:
        return False

    def checkpoint_on_stop(self) -> bool:
        return False

    def log(self, message: str) -> None:
        pass

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        pass

    def load_checkpoint(self) -> None:
        return None


def measure(spec_json: str) -> None:
    """In this (fresh) process: train the spec, print its peak bytes and whether amp was on."""
    import torch

    from taas.worker.trainer.data import load_dataset
    from taas.worker.trainer.loop import train

    spec = JobSpec.model_validate_json(spec_json)
    cuda = spec.device == "cuda"
    if cuda:
        torch.cuda.init()
        free, total = torch.cuda.mem_get_info()
        context = total - free - torch.cuda.memory_reserved()
    result = train(spec, load_dataset(spec, None), _Quiet())
    if cuda:
        peak = torch.cuda.max_memory_reserved() + context
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    applied = result.acceleration["applied"]
    print(json.dumps({"peak": peak, "amp": isinstance(applied, list) and "amp" in applied}))


def measured_peak(spec: JobSpec) -> dict[str, Any]:
    command = [sys.executable, __file__, "--measure", spec.model_dump_json()]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--only", default="", help="only the specs whose name has this text")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure)
        return
    print(f"| spec ({args.device}) | amp | estimate | measured peak | estimate / peak |")
    print("|---|---|---:|---:|---:|")
    for name, entry in SPECS.items():
        if args.only not in name:
            continue
        spec = job_spec(entry, args.device)
        measured = measured_peak(spec)
        amp = bool(measured["amp"])
        estimate = estimate_memory(spec, dataset_info(spec), device=args.device, amp=amp)
        ratio = estimate.total / measured["peak"]
        print(
            f"| {name} | {'bf16' if measured['amp'] else 'fp32'} | "
            f"{format_bytes(estimate.total)} | {format_bytes(measured['peak'])} | {ratio:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
