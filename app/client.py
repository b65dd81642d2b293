"""A small Python client for the public API (used by the CLI and the end-to-end tests)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import connect_sse

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
# The server sends a keep-alive comment every 15 s: a stream silent for this long is dead.
STREAM_READ_TIMEOUT = 45.0

StreamEvent = tuple[str | None, str, dict[str, Any]]
# A 429 (the key's rate limit) is waited out and retried this many times, each wait as long as
# the server's Retry-After but never longer than RATE_LIMIT_WAIT_CAP seconds.
RATE_LIMIT_RETRIES = 3
RATE_LIMIT_WAIT_CAP = 60.0


class ApiError(Exception):
    def __init__(self, response: httpx.Response) -> None:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text[:500]
        super().__init__(f"HTTP {response.status_code}: {detail}")
        self.status_code = response.status_code
        self.detail = detail


class TaasClient:
    def __init__(self, api_url: str, api_key: str, timeout: float = 30.0) -> None:
        self.http = httpx.Client(
            base_url=api_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
        )

    def __enter__(self) -> TaasClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        for _ in range(RATE_LIMIT_RETRIES):
            if response.status_code != 429 or "Retry-After" not in response.headers:
                break
            time.sleep(_retry_after(response))
            response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise ApiError(response)
        return response.json() if response.content else None

    def submit(self, spec: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        job: dict[str, Any] = self._json("POST", "/v1/jobs", json=spec, headers=headers)
        return job

    def job(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self._json("GET", f"/v1/jobs/{job_id}")
        return job

    def jobs(self, status: str | None = None, limit: int = 20, cursor: str | None = None) -> Any:
        params = {key: value for key, value in [("status", status), ("cursor", cursor)] if value}
        return self._json("GET", "/v1/jobs", params={**params, "limit": limit})

    def cancel(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self._json("POST", f"/v1/jobs/{job_id}/cancel")
        return job

    def delete(self, job_id: str) -> None:
        self._json("DELETE", f"/v1/jobs/{job_id}")

    def metrics(self, job_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._json("GET", f"/v1/jobs/{job_id}/metrics")["items"]
        return items

    def events(self, job_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._json("GET", f"/v1/jobs/{job_id}/events")["items"]
        return items

    def artifacts(self, job_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._json("GET", f"/v1/jobs/{job_id}/artifacts")["items"]
        return items

    def stream(
        self, job_id: str | None = None, last_event_id: str | None = None
    ) -> Iterator[StreamEvent]:
        """Server-Sent Events as (id, event type, data): one job's from its first event (or
        after ``last_event_id``) until its ``end``, or, without ``job_id``, every job of the
        tenant from now on. Raises ApiError for an error answer, httpx_sse.SSEError for an
        answer that is not an event stream, httpx.TransportError when the connection fails."""
        path = f"/v1/jobs/{job_id}/stream" if job_id else "/v1/stream"
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        timeout = httpx.Timeout(self.http.timeout.connect, read=STREAM_READ_TIMEOUT)
        with connect_sse(self.http, "GET", path, headers=headers, timeout=timeout) as source:
            if source.response.status_code >= 400:
                source.response.read()
                raise ApiError(source.response)
            for sse in source.iter_sse():
                if sse.data:  # a keep-alive comment ends as an empty event: not one
                    yield (sse.id or None), sse.event, json.loads(sse.data)

    def upload_dataset(self, path: Path, name: str | None = None, **fields: str) -> dict[str, Any]:
        """Upload an .npz, CSV or zip file; ``fields`` are label_column or image_size."""
        form = {key: value for key, value in {"name": name, **fields}.items() if value}
        with path.open("rb") as file:
            files = {"file": (path.name, file, "application/octet-stream")}
            dataset: dict[str, Any] = self._json("POST", "/v1/datasets", data=form, files=files)
        return dataset

    def datasets(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._json("GET", "/v1/datasets")["items"]
        return items

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        dataset: dict[str, Any] = self._json("GET", f"/v1/datasets/{dataset_id}")
        return dataset

    def delete_dataset(self, dataset_id: str) -> None:
        self._json("DELETE", f"/v1/datasets/{dataset_id}")

    def submit_sweep(self, sweep: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = self._json("POST", "/v1/sweeps", json=sweep)
        return created

    def sweep(self, sweep_id: str) -> dict[str, Any]:
        sweep: dict[str, Any] = self._json("GET", f"/v1/sweeps/{sweep_id}")
        return sweep

    def sweeps(self, limit: int = 20) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._json("GET", "/v1/sweeps", params={"limit": limit})[
            "items"
        ]
        return items

    def cancel_sweep(self, sweep_id: str) -> dict[str, Any]:
        sweep: dict[str, Any] = self._json("POST", f"/v1/sweeps/{sweep_id}/cancel")
        return sweep

    def delete_sweep(self, sweep_id: str) -> None:
        self._json("DELETE", f"/v1/sweeps/{sweep_id}")

    def create_key(self, name: str, scope: str, expires_at: str | None = None) -> dict[str, Any]:
        """A new key of this key's tenant (needs an admin key); its ``key`` is shown this once."""
        body = {"name": name, "scope": scope, "expires_at": expires_at}
        created: dict[str, Any] = self._json("POST", "/v1/keys", json=body)
        return created

    def keys(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._json("GET", "/v1/keys")["items"]
        return items

    def revoke_key(self, key_id: str) -> None:
        self._json("DELETE", f"/v1/keys/{key_id}")

    def wait(
        self,
        job_id: str,
        timeout: float = 3600.0,
        poll_seconds: float = 1.0,
        on_update: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the job ends; ``on_update`` sees every polled state."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if on_update is not None:
                on_update(job)
            if job["status"] in TERMINAL:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout:.0f}s")
            time.sleep(poll_seconds)

    def download(self, job_id: str, out_dir: Path) -> list[Path]:
        """Fetch every artifact into ``out_dir``, verifying each against its listed sha256."""
        out_dir.mkdir(parents=True, exist_ok=True)
        return [self._download_one(job_id, item, out_dir) for item in self.artifacts(job_id)]

    def _download_one(self, job_id: str, item: dict[str, Any], out_dir: Path) -> Path:
        name = Path(item["name"]).name  # never let a server-supplied name leave out_dir
        target, partial = out_dir / name, out_dir / f".{name}.partial"
        digest = hashlib.sha256()
        with self.http.stream("GET", f"/v1/jobs/{job_id}/artifacts/{name}") as response:
            if response.status_code >= 400:
                response.read()
                raise ApiError(response)
            with partial.open("wb") as file:
                for chunk in response.iter_bytes():
                    digest.update(chunk)
                    file.write(chunk)
        if digest.hexdigest() != item["sha256"]:
            partial.unlink()
            raise ValueError(f"{name}: sha256 {digest.hexdigest()} != listed {item['sha256']}")
        partial.replace(target)
        return target


def _retry_after(response: httpx.Response) -> float:
    try:
        seconds = float(response.headers["Retry-After"])
    except ValueError:
        seconds = 1.0  # an HTTP date: not sent by this server, so wait a little and see
    return min(max(seconds, 0.0), RATE_LIMIT_WAIT_CAP)
