"""The chaos soak, small: 30 jobs while workers and API processes are SIGKILLed and Redis and
PostgreSQL restart, in turn, every few seconds. No job may be lost, done twice or left
incomplete, and no request may be answered 500 (scripts/soak.py says what each word means).

Sized to prove that, not to measure throughput: faults come in rounds that hold each kind once,
and 30 jobs of three epochs keep jobs running (queued, claimed, mid-epoch, uploading) through
at least two rounds, on an idle machine and on a busy one; `python -m scripts.soak --jobs 1000`
is the long run."""

from __future__ import annotations

import pytest

from scripts.soak import FAULTS, parse_options, run_soak

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]


@pytest.mark.timeout(240)
def test_thirty_jobs_survive_every_kind_of_fault() -> None:
    options = parse_options(["--jobs", "30", "--fault-every", "4", "--timeout", "170"])
    report = run_soak(options)
    print("\n".join(report.lines(options)))

    assert report.submitted == 30
    assert report.lost == []
    assert report.duplicated == []
    assert report.incomplete == []
    assert report.server_errors == []
    assert report.succeeded + sum(report.failed.values()) == 30
    assert all(report.fault_counts[kind] >= 1 for kind in FAULTS), report.fault_counts
    assert len(report.faults) >= 8, report.faults
