"""The sweep controller under concurrency: two passes over one sweep at once (its submit's,
the reconciler's, a trial's finish) start each trial once."""

from __future__ import annotations

import threading
import time
from typing import Any

from fastapi.testclient import TestClient

from taas.app.core.config import get_settings
from taas.app.core.db import open_session
from taas.app.jobs.models import Job
from taas.app.sweeps.controller import advance_sweep
from tests.app.sweeps.test_router import GRID


def test_a_second_pass_waits_for_the_first_and_starts_no_trial_twice(
    api: TestClient, auth: dict[str, str]
) -> None:
    sweep_id = api.post("/v1/sweeps", json={**GRID, "max_parallel": 1}, headers=auth).json()["id"]
    settings = get_settings()
    first, second = open_session(), open_session()
    # The first trial ends: both passes now see room for trial 1.
    trial = first.query(Job).filter_by(sweep_id=sweep_id, trial_number=0).one()
    trial.status = "cancelled"
    first.commit()

    started_first = advance_sweep(first, sweep_id, settings)  # not committed yet
    assert [job.trial_number for job in started_first] == [1]
    outcome: dict[str, Any] = {}

    def second_pass() -> None:
        try:
            outcome["started"] = advance_sweep(second, sweep_id, settings)
            second.commit()
        except Exception as error:  # reported by the assertion below
            outcome["error"] = error

    thread = threading.Thread(target=second_pass)
    thread.start()
    time.sleep(0.5)  # the second pass is waiting for the first one's commit
    first.commit()
    thread.join(timeout=15)
    first.close()
    second.close()
    assert "error" not in outcome, outcome.get("error")
    assert outcome["started"] == []  # trial 1 is running: no room for another
    with open_session() as check:
        numbers = [job.trial_number for job in check.query(Job).filter_by(sweep_id=sweep_id)]
    assert sorted(numbers) == [0, 1]
