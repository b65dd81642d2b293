"""The folder where the processes of `taas api --workers N` keep their metrics.

prometheus-client's multiprocess mode: each process writes its counters and histograms to
memory-mapped files in ``PROMETHEUS_MULTIPROC_DIR``, and a scrape answered by any of them adds
up all the files. The folder must be set before uvicorn starts its processes (they read it when
they first import prometheus-client) and must start empty: files left by an earlier run would
add that run's counts to this one's.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def metrics_shared_by_processes(workers: int) -> Iterator[Path | None]:
    """A fresh folder for the API processes' metrics while they run, or None for a single
    process (whose own registry holds everything). An operator's PROMETHEUS_MULTIPROC_DIR (a
    tmpfs, say) is emptied and kept; otherwise a temporary folder is made, then removed."""
    given = os.environ.get(MULTIPROCESS_ENV)
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        empty_folder(folder)
        yield folder
        return
    if workers <= 1:
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="taas-metrics-"))
    os.environ[MULTIPROCESS_ENV] = str(folder)
    try:
        yield folder
    finally:
        os.environ.pop(MULTIPROCESS_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


def empty_folder(folder: Path) -> None:
    for path in folder.glob("*.db"):  # prometheus-client's files, nothing else
        path.unlink(missing_ok=True)
