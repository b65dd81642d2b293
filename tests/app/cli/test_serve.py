"""`taas serve`'s console: the worker's log stays in its file except for what matters."""

from __future__ import annotations

import io
from pathlib import Path

from taas.app.cli.serve import WorkerLogEcho

CELERY_START = """\
 -------------- celery@vm v5.7.0 (collider)
--- ***** -----
- ** ---------- [config]
[tasks]
  . taas.run_job

[2026-11-30 22:16:00,666: WARNING/MainProcess] No hostname was supplied. Reverting to default 'localhost'
[2026-11-30 22:16:00,670: INFO/MainProcess] celery@vm ready.
[2026-11-30 22:16:05,001: INFO/MainProcess] Task taas.run_job[42] received
"""  # noqa: E501
TROUBLE = """\
[2026-11-30 22:17:00,000: WARNING/MainProcess] retrying in 1.0s (try 1): POST /internal/metrics
[2026-11-30 22:17:01,000: ERROR/MainProcess] Task taas.run_job[42] raised unexpected: ValueError('x')
Traceback (most recent call last):
  File "/app/worker/tasks.py", line 10, in run_job
    raise ValueError("x")
ValueError: x
[2026-11-30 22:17:02,000: INFO/MainProcess] Task taas.run_job[43] received
"""  # noqa: E501


def echoed(echo: WorkerLogEcho) -> list[str]:
    console = io.StringIO()
    echo.echo_new_lines(console)
    return console.getvalue().splitlines()


def test_the_console_shows_warnings_and_errors_with_their_traceback_only(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    echo = WorkerLogEcho(log)
    log.write_text(CELERY_START)

    assert (
        echoed(echo) == []
    )  # the banner, its harmless warning and the INFO lines stay in the file

    with log.open("a") as file:
        file.write(TROUBLE + "[2026-11-30 22:17:03,000: WARNING/MainProcess] half a li")
    assert echoed(echo) == [
        "worker: WARNING retrying in 1.0s (try 1): POST /internal/metrics",
        "worker: ERROR Task taas.run_job[42] raised unexpected: ValueError('x')",
        "worker: Traceback (most recent call last):",
        'worker:   File "/app/worker/tasks.py", line 10, in run_job',
        'worker:     raise ValueError("x")',
        "worker: ValueError: x",
    ]

    with log.open("a") as file:
        file.write("ne\n")
    assert echoed(echo) == ["worker: WARNING half a line"]  # shown once it is whole


def test_a_crash_before_logging_started_is_shown(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_text("old run's lines are not shown again\n")
    echo = WorkerLogEcho(log)
    with log.open("a") as file:
        file.write('Traceback (most recent call last):\n  File "x"\nImportError: no torch\n')

    assert echoed(echo) == [
        "worker: Traceback (most recent call last):",
        'worker:   File "x"',
        "worker: ImportError: no torch",
    ]
