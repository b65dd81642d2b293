"""The command line of ``python -m taas.worker.trainer.bench`` and ``taas bench``: the options
parsed, the bench run, the report printed and written."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from taas.worker.trainer.bench.report import render_markdown, write_json
from taas.worker.trainer.bench.run import run_bench
from taas.worker.trainer.bench.workload import BASELINE_MAX_EPOCHS, BenchError, BenchOptions
from taas.worker.trainer.data import DatasetUnavailable


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text}")
    return value


def accuracies(text: str) -> tuple[float, ...]:
    """ "0.93,0.94": one or more accuracies in (0, 1]."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected accuracies such as 0.93,0.94, got {text}"
        ) from None
    if not all(0.0 < value <= 1.0 for value in values):
        raise argparse.ArgumentTypeError(f"expected accuracies in (0, 1], got {text}")
    return values


def json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not JSON: {error}") from error
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def parse_options(argv: Sequence[str] | None, prog: str) -> BenchOptions:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Measure the accelerated trainer against the plain PyTorch loop on this "
        "machine: same-spec throughput and time to a target accuracy. Progress goes to stderr, "
        "the markdown report to stdout, every number to a JSON file.",
    )
    add = parser.add_argument
    add("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default: auto")
    add("--repeats", type=positive_int, default=3, help="runs per (network, mode); default 3")
    add("--repeats-target", type=positive_int, help="runs per recipe; default 3 on cuda, 1 on cpu")
    add("--epochs", type=int, default=3, help="epochs per same-spec run (>= 2); default 3")
    add(
        "--target",
        dest="targets",
        type=accuracies,
        help="target test accuracies, comma-separated; default 0.93,0.94 on cuda, 0.91 on cpu",
    )
    add(
        "--target-epochs",
        type=positive_int,
        help="epoch budget of our recipe; default: the recipe's own (the spec's defaults)",
    )
    add(
        "--baseline-epochs",
        type=positive_int,
        default=BASELINE_MAX_EPOCHS,
        help=f"epoch budget of the examples loop; default {BASELINE_MAX_EPOCHS}",
    )
    add("--only", choices=["same-spec", "time-to-target"], help="run one part only")
    add("--out", type=Path, help="JSON file; default bench-<device>.json")
    add(
        "--data-dir",
        type=Path,
        default=os.environ.get("TAAS_DATA_DIR") or None,
        help="torchvision data folder; default $TAAS_DATA_DIR",
    )
    add(
        "--dataset",
        choices=["fashion_mnist", "mnist", "synthetic"],
        default="fashion_mnist",
        help="default fashion_mnist (synthetic: a quick smoke run)",
    )
    add(
        "--recipe",
        type=json_object,
        default={},
        help='spec fields over our defaults in (b), e.g. \'{"model": {"arch": "resnet"}}\'',
    )
    args = parser.parse_args(argv)
    if args.epochs < 2 and args.only != "time-to-target":
        parser.error("--epochs must be at least 2: samples/s leaves out the first epoch")
    return BenchOptions(**vars(args))


def echo_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(
    argv: Sequence[str] | None = None, prog: str = "python -m taas.worker.trainer.bench"
) -> int:
    options = parse_options(argv, prog)
    try:
        report = run_bench(options, echo_progress)
    except (BenchError, DatasetUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    path = Path(report.options["out"])
    write_json(report, path)
    print(render_markdown(report), end="", flush=True)
    echo_progress(f"wrote {path}")
    return 0
