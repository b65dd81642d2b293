"""Measure the accelerated trainer against the plain loop: one process, one machine, one run.

    python -m taas.worker.trainer.bench [--device cuda] [--repeats 3] [--only same-spec] ...
    taas bench ...                   (the same options)

Two questions, each answered as a ratio measured in this run on this machine:

(a) Same spec: how much faster does ``acceleration: "auto"`` train the very same network and recipe
    than ``"off"`` (the plain PyTorch loop: DataLoader, fp32, eager), and at what accuracy? Measured
    on the reference MLP and on the pytorch/examples MNIST CNN.
(b) Time to target: how long from nothing (dataset not loaded) to a test accuracy of T (one or
    more targets: 91% on a CPU, 93% and 94% on a GPU), for the pytorch/examples-style loop versus
    our default recipe for the device? Where our recipe compiles, its first run per target starts
    cold (nothing compiled in this process, an empty compile cache) and the later runs warm (the
    step compiled in this process before, as in a worker that trained the architecture already).

Progress lines go to stderr as the runs finish; the markdown report goes to stdout at the end and
the full numbers (every run) to a JSON file, both stamped with the machine and the git commit.
Measuring follows airbench: the first epoch (warm-up, compile) is left out of throughput, the GPU is
synchronized before a clock is read, and every figure is the median (min-max) of several runs.

- ``workload``: what runs: the options, the networks and the plain recipe a user would write by
  hand (acceleration "off": DataLoader, fp32, eager), and our default recipe for the device.
- ``timing``: one train() of our trainer on the clock, the process's torch settings put back.
- ``same_spec`` (a) and ``time_to_target`` (b, with its cold and warm compile rows): the runs.
- ``results``: what they measure; ``machine``: where it ran, on which commit.
- ``report``: the markdown and the JSON; ``run``: the whole bench as the options ask.
- ``cli`` (run by ``__main__``, and by ``taas bench``): the command line.

May import: torch, ``taas.app.spec``, and the trainer (``loop``, ``compiled``, ``data``,
``series``). Only ``taas bench`` imports it: the API and the worker never load it.
"""

from taas.worker.trainer.bench.cli import main, parse_options
from taas.worker.trainer.bench.report import render_markdown, write_json
from taas.worker.trainer.bench.results import BenchReport
from taas.worker.trainer.bench.run import run_bench
from taas.worker.trainer.bench.workload import BenchError, BenchOptions

__all__ = [
    "BenchError",
    "BenchOptions",
    "BenchReport",
    "main",
    "parse_options",
    "render_markdown",
    "run_bench",
    "write_json",
]
