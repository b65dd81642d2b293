"""The worker tells the API, every few seconds, that it is alive: its queues and job slots.

The API sends jobs to the broker only for free slots of workers it has heard from
(app/scheduling/dispatch.py), so a worker that stops saying so gets no new work, and one that
starts gets work at once. Runs in a thread of the worker's main process; a failed call is
logged once per outage and tried again next period: training never waits for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from urllib.parse import quote

import httpx

logger = logging.getLogger(__name__)
DEFAULT_PERIOD = 5.0
# A failed call is tried again this soon: a worker that could not say it is alive gets no jobs.
RETRY_SECONDS = 1.0


def presence_name() -> str:
    """This worker process, as the API knows it: its host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Presence:
    def __init__(
        self,
        api_url: str,
        worker_token: str,
        queues: Sequence[str],
        slots: int,
        datasets: Callable[[], dict[str, dict[str, object]]] | None = None,
    ) -> None:
        self.name = presence_name()
        self.body: dict[str, object] = {"queues": list(queues), "slots": slots}
        # Looked at again on every call: files installed meanwhile count at once.
        self.datasets = datasets
        self.url = f"{api_url.rstrip('/')}/internal/v1/workers/{quote(self.name, safe='')}"
        self.headers = {"Authorization": f"Bearer {worker_token}"}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="taas-presence", daemon=True)
        self.failing = False

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Stop saying so, and tell the API this worker's slots are gone (best effort)."""
        self.stopped.set()
        # On failure it stops counting three periods after its last call anyway.
        with contextlib.suppress(httpx.HTTPError):
            httpx.delete(self.url, headers=self.headers, timeout=2.0)

    def _run(self) -> None:
        period = DEFAULT_PERIOD
        while not self.stopped.is_set():
            answered = self.say_alive()
            if answered is not None:
                period = answered
            self.stopped.wait(period if answered is not None else RETRY_SECONDS)

    def say_alive(self) -> float | None:
        """One call; the API's presence period, or None when the call failed."""
        try:
            body = (
                self.body if self.datasets is None else {**self.body, "datasets": self.datasets()}
            )
            response = httpx.put(self.url, json=body, headers=self.headers, timeout=10.0)
            response.raise_for_status()
            period = float(response.json()["presence_seconds"])
        except (httpx.HTTPError, ValueError, KeyError) as error:
            if not self.failing:
                logger.warning("could not tell the API this worker is alive: %r", error)
            self.failing = True
            return None
        if self.failing:
            logger.info("the API hears this worker again")
        self.failing = False
        return period
