"""The worker's only way to the platform: HTTP calls to the API's internal routes (worker token).

Transient failures (connection errors, 5xx) are retried with exponential backoff and jitter, so a
short API restart costs a job nothing. 4xx answers are final; 409 means this attempt is stale.
507 (the API's disk is full) is retried for ``storage_wait_seconds``, as space may come back, by
the calls that must get through (results, finish); the others raise StorageFull at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from taas.client import describe_file  # size, sha256 and part checksums, as the SDK sends

logger = logging.getLogger(__name__)
UPLOAD_CHUNK_BYTES = 1024 * 1024
# A write the API refused for lack of space is tried again this often while space may return.
STORAGE_RETRY_SECONDS = 5.0
STORE = "object storage"  # who did not answer, when a presigned URL fails


class ApiRefused(Exception):
    """The API answered with a 4xx: retrying the same request will not help."""

    def __init__(self, status_code: int, detail: object) -> None:
        super().__init__(f"API refused ({status_code}): {detail}")
        self.status_code = status_code
        self.detail = detail

    def __reduce__(self) -> tuple[object, ...]:
        # Celery pickles a task's error for its result: with its arguments, it arrives whole.
        return type(self), (self.status_code, self.detail)


class StaleAttempt(ApiRefused):
    """409: the job is no longer ours (cancelled before start, claimed by another, or finished)."""


class StorageFull(ApiRefused):
    """507: the API has no room for the write (or, for a claim, too little to take new work)."""


@dataclass(frozen=True)
class DatasetRef:
    """An uploaded dataset to fetch from the API; the cache keys it by sha256."""

    id: str
    sha256: str
    size_bytes: int
    name: str = ""  # as its owner named it; an older API sends none


@dataclass(frozen=True)
class Claim:
    job_id: str
    attempt: int
    spec: dict[str, Any]
    heartbeat_seconds: float
    dataset: DatasetRef | None  # None: a built-in dataset, loaded locally
    time_limit_seconds: float | None = None  # from the claim on; None from an API without limits
    time_limit: str = ""  # the limit and where it comes from, in words


class ApiReporter:
    def __init__(
        self,
        api_url: str,
        worker_token: str,
        *,
        attempts: int = 8,
        timeout: float = 30.0,
        give_up: threading.Event | None = None,
        storage_wait_seconds: float = 600.0,
    ) -> None:
        self.api_url, self.worker_token = api_url, worker_token
        self.client = httpx.Client(
            base_url=api_url.rstrip("/") + "/internal/v1/jobs",
            headers={"Authorization": f"Bearer {worker_token}"},
            timeout=timeout,
        )
        # For presigned object-storage URLs: no token, and time for a 64 MiB part.
        self.store_client = httpx.Client(timeout=httpx.Timeout(timeout, write=300.0))
        self.attempts = attempts
        self.storage_wait_seconds = storage_wait_seconds
        # Once set (the worker is shutting down), a failed call is not retried: a worker that
        # must exit does not sit out a minute of back-off first. The job is not lost: its
        # attempt expires and resumes elsewhere.
        self.give_up = give_up or threading.Event()

    def close(self) -> None:
        self.client.close()
        self.store_client.close()

    def claim(self, job_id: str, worker: str) -> Claim | None:
        """Start a new attempt of the job, or None when it is not ours to run."""
        try:
            # Storage low (507): raised at once, the job stays queued for later.
            body = self._call(
                "POST", f"/{job_id}/claim", json={"worker": worker}, wait_for_storage=False
            )
        except StaleAttempt:
            return None
        except ApiRefused as error:
            if error.status_code != 404:
                raise
            return None  # deleted while it waited in the queue: nothing to run
        dataset = body.get("dataset")
        return Claim(
            body["job_id"],
            body["attempt"],
            body["spec"],
            body["heartbeat_seconds"],
            None if dataset is None else DatasetRef(**dataset),
            body.get("time_limit_seconds"),
            body.get("time_limit", ""),
        )

    def heartbeat(self, job_id: str, attempt: int, report: dict[str, Any]) -> dict[str, Any]:
        """Renew the lease and report progress (``epoch``, ``fraction``, optionally the batches,
        rates and step ``points``). The answer says whether to stop: ``cancel`` (the user asked)
        or ``prune`` (the trial's sweep stopped it early)."""
        path = f"/{job_id}/attempts/{attempt}/heartbeat"
        return self._call("POST", path, json=report, wait_for_storage=False)

    def post_metrics(self, job_id: str, attempt: int, point: dict[str, Any]) -> None:
        self._call("POST", f"/{job_id}/attempts/{attempt}/metrics", json=point)

    def post_event(self, job_id: str, attempt: int, message: str) -> None:
        body = {"message": message[:4000]}
        self._call(
            "POST", f"/{job_id}/attempts/{attempt}/events", json=body, wait_for_storage=False
        )

    def upload_artifact(
        self, job_id: str, attempt: int, path: Path, kind: str, *, wait_for_storage: bool = True
    ) -> None:
        """Send the file with its sha256: straight to object storage when the API hands out
        URLs for it, else through the API. Either way the API verifies the digest before it
        records the artifact."""
        file = describe_file(path)
        base = f"/{job_id}/attempts/{attempt}"
        plan = self._call(
            "POST",
            f"{base}/direct-uploads",
            json={"name": path.name, "kind": kind, **file},
            wait_for_storage=wait_for_storage,
        )
        if plan.get("direct"):
            self._upload_direct(base, path, kind, file, plan)
            return
        self._call(
            "PUT",
            f"{base}/artifacts/{path.name}",
            params={"kind": kind},
            headers={
                "X-Content-SHA256": file["sha256"],
                "Content-Type": "application/octet-stream",
            },
            content_factory=lambda: _chunks(path),
            wait_for_storage=wait_for_storage,
        )

    def _upload_direct(
        self, base: str, path: Path, kind: str, file: dict[str, Any], plan: dict[str, Any]
    ) -> None:
        """PUT each part to its presigned URL (retried with backoff), then have the API check
        and record the object; after a failure, the parts are aborted so nothing is left."""
        upload = {"key": plan["key"], "upload_id": plan.get("upload_id")}
        try:
            etags = [
                self._put_part(path, part, plan["part_bytes"], file["size_bytes"])
                for part in plan["parts"]
            ]
            self._call(
                "POST",
                f"{base}/direct-uploads/complete",
                json={"name": path.name, "kind": kind, **file, **upload, "etags": etags},
            )
        except BaseException:
            try:
                self._call("POST", f"{base}/direct-uploads/abort", json=upload)
            except Exception as error:  # the gc aborts it later; the first error matters
                logger.warning("could not abort the upload of %s: %r", path.name, error)
            raise

    def _put_part(self, path: Path, part: dict[str, Any], part_bytes: int, size_bytes: int) -> str:
        offset = (part["number"] - 1) * part_bytes
        length = min(part_bytes, size_bytes - offset)
        headers = {**part["headers"], "Content-Length": str(length)}
        what = f"PUT part {part['number']} of {path.name} to object storage"
        for attempt_number in range(1, self.attempts + 1):
            try:
                response = self.store_client.put(
                    part["url"], content=_chunks(path, offset, length), headers=headers
                )
            except httpx.TransportError as error:
                self._back_off(attempt_number, f"{what}: {error!r}", STORE)
                continue
            if response.status_code >= 500:  # 503 SlowDown included
                self._back_off(attempt_number, f"{what}: HTTP {response.status_code}", STORE)
                continue
            if response.status_code >= 400:
                raise ApiRefused(response.status_code, f"{what}: {response.text[:300]}")
            return str(response.headers["etag"])
        raise AssertionError("unreachable: _back_off raises on the last attempt")

    def download_dataset(self, job_id: str, attempt: int, destination: Path) -> None:
        """Stream the job's uploaded dataset into ``destination`` (the caller verifies it)."""
        self._download(f"/{job_id}/attempts/{attempt}/dataset", destination)

    def download_checkpoint(self, job_id: str, attempt: int, destination: Path) -> str | None:
        """Stream the job's latest checkpoint into ``destination`` and verify it; returns its
        name, or None when the job has none yet."""
        path = f"/{job_id}/attempts/{attempt}/checkpoint"
        try:
            headers = self._download(path, destination)
        except ApiRefused as error:
            if error.status_code == 404:
                return None
            raise
        if sha256_of(destination) != headers.get("x-content-sha256"):
            destination.unlink(missing_ok=True)
            raise ValueError(f"checkpoint download from {path} does not match its sha256")
        return str(headers.get("x-artifact-name", "checkpoint"))

    def _download(self, path: str, destination: Path) -> httpx.Headers:
        """Stream GET ``path`` into ``destination`` with the retries of every call; returns the
        API's response headers. Where files live in object storage the API redirects to a
        presigned URL, fetched without the worker token (the URL is the credential)."""
        for attempt_number in range(1, self.attempts + 1):
            try:
                with self.client.stream("GET", path, follow_redirects=False) as response:
                    if response.status_code >= 500:
                        self._back_off(attempt_number, f"GET {path}: HTTP {response.status_code}")
                        continue
                    if response.status_code >= 400:
                        response.read()
                        _checked(response)  # raises ApiRefused / StaleAttempt
                    source: contextlib.AbstractContextManager[httpx.Response]
                    if response.is_redirect:
                        response.read()
                        source = self.store_client.stream("GET", response.headers["location"])
                    else:
                        source = contextlib.nullcontext(response)
                    with source as body:
                        if body.status_code >= 500:
                            self._back_off(attempt_number, f"GET {path}: {body.status_code}", STORE)
                            continue
                        if body.status_code >= 400:
                            body.read()
                            raise ApiRefused(body.status_code, f"object storage: {body.text[:300]}")
                        _save(body, destination)
                    return response.headers
            except httpx.TransportError as error:
                self._back_off(attempt_number, f"GET {path}: {error!r}")
        raise AssertionError("unreachable: _back_off raises on the last attempt")

    def release(self, job_id: str, attempt: int, reason: str) -> None:
        """Give the job back to the queue (this worker is shutting down)."""
        self._call("POST", f"/{job_id}/attempts/{attempt}/release", json={"reason": reason})

    def finish(self, job_id: str, attempt: int, outcome: dict[str, Any]) -> None:
        self._call("POST", f"/{job_id}/attempts/{attempt}/finish", json=outcome)

    def _call(
        self,
        method: str,
        path: str,
        *,
        content_factory: Any = None,
        wait_for_storage: bool = True,
        **kwargs: Any,
    ) -> dict[str, Any]:
        attempt, storage_deadline = 1, None
        while True:
            try:
                content = content_factory() if content_factory else None
                response = self.client.request(method, path, content=content, **kwargs)
            except httpx.TransportError as error:
                self._back_off(attempt, f"{method} {path}: {error!r}")
                attempt += 1
                continue
            if response.status_code == 507:
                # Not a failure of the API: it lacks space, which may come back. Waited for
                # against its own deadline, not the tries that transient failures get.
                if storage_deadline is None:
                    storage_deadline = time.monotonic() + self.storage_wait_seconds
                self._wait_for_storage(response, storage_deadline, wait_for_storage)
                continue
            if response.status_code >= 500:
                self._back_off(attempt, f"{method} {path}: HTTP {response.status_code}")
                attempt += 1
                continue
            return _checked(response)

    def _wait_for_storage(self, response: httpx.Response, deadline: float, wait: bool) -> None:
        """Sleep before retrying a 507, or raise StorageFull once waiting is over (or not
        wanted)."""
        left = deadline - time.monotonic()
        if not wait or left <= 0 or self.give_up.is_set():
            _checked(response)  # raises StorageFull with the API's reason
        request = response.request
        logger.warning(
            "%s %s: the API's storage is full (%s); retrying for up to %.0f s more",
            request.method,
            request.url.path,
            _detail(response),
            left,
        )
        if self.give_up.wait(min(STORAGE_RETRY_SECONDS, left)):
            _checked(response)

    def _back_off(self, attempt: int, what: str, party: str = "API") -> None:
        """Sleep before try ``attempt + 1``, or raise ConnectionError naming who did not answer
        (the API, or object storage) once the tries are spent."""
        if attempt >= self.attempts:
            raise ConnectionError(f"{party} unreachable after {attempt} tries: {what}")
        if self.give_up.is_set():
            raise ConnectionError(f"{party} unreachable, and this worker is shutting down: {what}")
        # Full jitter: workers that lost the API together must not all come back in lockstep.
        delay = random.uniform(0, min(30.0, 0.5 * 2**attempt))
        logger.warning("retrying in %.1fs (try %d): %s", delay, attempt, what)
        if self.give_up.wait(delay):
            raise ConnectionError(f"{party} unreachable, and this worker is shutting down: {what}")


def _save(response: httpx.Response, destination: Path) -> None:
    with destination.open("wb") as file:
        for chunk in response.iter_bytes(UPLOAD_CHUNK_BYTES):
            file.write(chunk)


def _checked(response: httpx.Response) -> dict[str, Any]:
    if response.status_code < 400:
        body: dict[str, Any] = response.json()
        return body
    error = {409: StaleAttempt, 507: StorageFull}.get(response.status_code, ApiRefused)
    raise error(response.status_code, _detail(response))


def _detail(response: httpx.Response) -> object:
    try:
        return response.json().get("detail")
    except ValueError:
        return response.text[:500]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(UPLOAD_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _chunks(path: Path, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
    """The file's bytes (``length`` of them from ``offset``, else all), a chunk at a time."""
    left = length
    with path.open("rb") as file:
        file.seek(offset)
        while left is None or left > 0:
            chunk = file.read(UPLOAD_CHUNK_BYTES if left is None else min(UPLOAD_CHUNK_BYTES, left))
            if not chunk:
                return
            if left is not None:
                left -= len(chunk)
            yield chunk
