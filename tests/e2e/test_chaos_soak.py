"""The chaos soak, small: 24 jobs while workers and API processes are SIGKILLed and Redis and
PostgreSQL restart, in turn, every few seconds. No job may be lost, done twice or left
incomplete, and no request may be answered 500 (scripts/soak.py says what each word means).

Sized to prove that, not to measure throughput: faults come in rounds that hold each kind once,
and jobs submitted evenly over 50 s keep jobs queued, running and uploading through at least two
rounds, however fast the machine; `python -m scripts.soak --jobs 1000` is the long run."""

from __future__ import annotations

import pytest

from scripts.chaos import FAULTS
from scripts.soak import parse_options, run_soak

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]


@pytest.mark.timeout(240)
def test_jobs_survive_two_rounds_of_every_kind_of_fault() -> None:
    arguments = ["--jobs", "24", "--spread", "50", "--fault-every", "4", "--timeout", "170"]
    options = parse_options(arguments)
    report = run_soak(options)
    print("\n".join(report.lines(options)))

    assert report.submitted == 24
    assert report.lost == []
    assert report.duplicated == []
    assert report.incomplete == []
    assert report.server_errors == []
    assert report.succeeded + sum(report.failed.values()) == 24
    assert all(report.fault_counts[kind] >= 2 for kind in FAULTS), report.fault_counts
