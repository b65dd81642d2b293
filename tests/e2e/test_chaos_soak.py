"""The chaos soak, small: 60 jobs while workers and API processes are SIGKILLed and Redis and
PostgreSQL restart, in turn, every few seconds. No job may be lost, done twice or left
incomplete, and no request may be answered 500 (scripts/soak.py says what each word means)."""

from __future__ import annotations

import pytest

from scripts.soak import FAULTS, parse_options, run_soak

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]


@pytest.mark.timeout(240)
def test_sixty_jobs_survive_every_kind_of_fault() -> None:
    options = parse_options(["--jobs", "60", "--fault-every", "4", "--timeout", "170"])
    report = run_soak(options)
    print("\n".join(report.lines(options)))

    assert report.submitted == 60
    assert report.lost == []
    assert report.duplicated == []
    assert report.incomplete == []
    assert report.server_errors == []
    assert report.succeeded + sum(report.failed.values()) == 60
    assert all(report.fault_counts[kind] >= 1 for kind in FAULTS), report.fault_counts
    assert len(report.faults) >= 8, report.faults
