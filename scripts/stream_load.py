"""Do idle event streams slow other requests? One run, the same server, with and without them.

Starts `taas api` on the embedded default (SQLite) in a temporary folder, submits one job (no
worker: it stays queued), then measures the rate of `GET /v1/jobs/{id}` from ``--clients``
concurrent loops for ``--seconds``, alternately with no stream open and with ``--streams`` idle
streams open (half on `/v1/stream`, half on the job's own stream), ``--rounds`` times each. From
the repository root:

    .venv/bin/python -m scripts.stream_load --streams 200 --seconds 10 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from tests.e2e.processes import free_port


async def requests_per_second(
    url: str, headers: dict[str, str], clients: int, seconds: float
) -> tuple[float, float]:
    """(requests a second, median latency in ms) of GET ``url`` from ``clients`` loops."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def loop(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            started = time.monotonic()
            response = await client.get(url, headers=headers)
            response.raise_for_status()
            latencies.append(time.monotonic() - started)

    async with httpx.AsyncClient(timeout=30) as client:
        started = time.monotonic()
        await asyncio.gather(*(loop(client) for _ in range(clients)))
        elapsed = time.monotonic() - started
    return len(latencies) / elapsed, statistics.median(latencies) * 1000


class IdleStreams:
    """Streams held open (their keep-alives read) by threads, until closed."""

    def __init__(self, urls: list[str], headers: dict[str, str]) -> None:
        self.stop = threading.Event()
        self.opened = threading.Semaphore(0)
        self.threads = [
            threading.Thread(target=self._hold, args=(url, headers), daemon=True) for url in urls
        ]

    def open(self) -> None:
        for thread in self.threads:
            thread.start()
        for _ in self.threads:
            if not self.opened.acquire(timeout=60):
                raise RuntimeError("a stream did not open within 60 s")

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _hold(self, url: str, headers: dict[str, str]) -> None:
        with httpx.stream("GET", url, headers=headers, timeout=60) as response:
            assert response.status_code == 200, response.status_code
            self.opened.release()
            self.stop.wait()


async def measure(api_url: str, key: str, args: argparse.Namespace) -> None:
    """Alternate ``--rounds`` times between no streams and idle streams: the machine's own
    drift shows up in both columns instead of passing for the streams' cost."""
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers) as client:
        job = (await client.post("/v1/jobs", json={"dataset": "fashion_mnist"})).json()
    status_url = f"{api_url}/v1/jobs/{job['id']}"
    urls = [
        f"{api_url}/v1/stream" if n % 2 else f"{status_url}/stream" for n in range(args.streams)
    ]
    await requests_per_second(status_url, headers, args.clients, 2)  # warm up
    print(f"GET /v1/jobs/{{id}} from {args.clients} concurrent clients, {args.seconds:.0f} s each:")
    rates: dict[str, list[float]] = {"without": [], "with": []}
    for number in range(1, args.rounds + 1):
        rates["without"].append(
            await report(f"round {number}, no streams", status_url, headers, args)
        )
        streams = IdleStreams(urls, headers)
        await asyncio.to_thread(streams.open)
        label = f"round {number}, {args.streams} idle streams"
        rates["with"].append(await report(label, status_url, headers, args))
        await asyncio.to_thread(streams.close)
        await asyncio.sleep(2)
    without, with_streams = statistics.median(rates["without"]), statistics.median(rates["with"])
    print(
        f"  median of {args.rounds} rounds: {without:.1f} req/s without, {with_streams:.1f} with "
        f"{args.streams} idle streams; ratio {with_streams / without:.2f} "
        f"(round to round, without: {min(rates['without']):.1f}-{max(rates['without']):.1f})"
    )


async def report(label: str, url: str, headers: dict[str, str], args: argparse.Namespace) -> float:
    rate, median_ms = await requests_per_second(url, headers, args.clients, args.seconds)
    print(f"  {label + ':':32} {rate:7.1f} req/s  (median {median_ms:.1f} ms)")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="taas-stream-load-"))
    env = {key: value for key, value in os.environ.items() if not key.startswith("TAAS_")}
    env["TAAS_HOME"] = str(home)
    taas = [sys.executable, "-m", "taas.app.cli"]
    try:
        subprocess.run([*taas, "migrate"], env=env, check=True, capture_output=True)
        key = (
            subprocess.run(
                [*taas, "keys", "create", "--tenant", "load"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        port = free_port()
        with open(home / "api.log", "wb") as log:
            api = subprocess.Popen(
                [*taas, "api", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            api_url = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    if httpx.get(f"{api_url}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            asyncio.run(measure(api_url, key, args))
        finally:
            api.terminate()
            try:
                api.wait(30)
            except subprocess.TimeoutExpired:
                api.kill()
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
