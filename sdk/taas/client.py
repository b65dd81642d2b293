"""The Python client of the taas API: jobs, datasets, sweeps, keys, webhooks and artifacts.

    client = taas.Client()  # TAAS_API_URL and TAAS_API_KEY, or the key `taas serve` wrote
    job = client.submit({"dataset": "fashion_mnist"})
    job = client.wait(job["id"], on_update=lambda job: print(job["status"]))
    client.download(job["id"], "model")

Answers are the API's JSON as dicts (the fields are those of the API reference at /docs). An
error answer raises the ApiError subclass for its status (taas.errors); a 429 from the key's rate
limit is waited out and retried a few times first.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import connect_sse

from taas.errors import (
    ApiError,
    ArtifactIntegrityError,
    InvalidId,
    ServiceTimeout,
    ServiceUnreachable,
    TaasError,
    WaitTimeout,
)

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
# The server sends a keep-alive comment every 15 s: a stream silent for this long is dead.
STREAM_READ_TIMEOUT = 45.0

StreamEvent = tuple[str | None, str, dict[str, Any]]
JobCallback = Callable[[dict[str, Any]], None]
# A 429 (the key's rate limit) is waited out and retried this many times, each wait as long as
# the server's Retry-After but never longer than RATE_LIMIT_WAIT_CAP seconds.
RATE_LIMIT_RETRIES = 3
# Presigned dataset uploads: files above this go straight to object storage by default, in
# parts of PART_BYTES (the server's part size: the checksum of each part is declared first).
DIRECT_UPLOAD_BYTES = 64 * 1024 * 1024
PART_BYTES = 64 * 1024 * 1024
PART_ATTEMPTS = 4
DIRECT_COMPLETE_SECONDS = 3600.0  # the server validates the whole file before it answers
RATE_LIMIT_WAIT_CAP = 60.0


class Client:
    """A connection to one taas service, as one API key (one tenant)."""

    def __init__(
        self, url: str | None = None, api_key: str | None = None, timeout: float = 30.0
    ) -> None:
        """``url`` defaults to $TAAS_API_URL (else http://127.0.0.1:8000), ``api_key`` to
        $TAAS_API_KEY, else the key file `taas serve` writes ($TAAS_HOME/api_key, .taas by
        default)."""
        self.url = _checked_url(url or os.environ.get("TAAS_API_URL") or DEFAULT_URL)
        key = api_key or _key_from_environment()
        self.http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=timeout,
            transport=_ExplainedTransport(),
        )

    def __repr__(self) -> str:
        return f"Client(url={self.url!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # Jobs

    def submit(self, spec: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        """Submit a training job; with ``idempotency_key``, submitting again returns the same
        job instead of a second one (safe to retry after a lost answer)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._object("POST", "/v1/jobs", json=spec, headers=headers)

    def job(self, job_id: str) -> dict[str, Any]:
        return self._object("GET", f"/v1/jobs/{_id(job_id, 'job')}")

    def jobs(
        self,
        status: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
        sweep_id: str | None = None,
    ) -> dict[str, Any]:
        """One page of the tenant's jobs, newest first: {"items": [...], "next_cursor": ...}."""
        params = {"status": status, "cursor": cursor, "sweep_id": sweep_id}
        present = {key: value for key, value in params.items() if value}
        return self._object("GET", "/v1/jobs", params={**present, "limit": limit})

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._object("POST", f"/v1/jobs/{_id(job_id, 'job')}/cancel")

    def delete(self, job_id: str) -> None:
        """Delete an ended job with its files."""
        self._json("DELETE", f"/v1/jobs/{_id(job_id, 'job')}")

    def metrics(self, job_id: str) -> list[dict[str, Any]]:
        """One point per epoch (train and validation loss, accuracy, lr, samples/s)."""
        return self._items(f"/v1/jobs/{_id(job_id, 'job')}/metrics")

    def events(self, job_id: str) -> list[dict[str, Any]]:
        return self._items(f"/v1/jobs/{_id(job_id, 'job')}/events")

    def wait(
        self,
        job_id: str,
        timeout: float = 24 * 3600.0,
        poll_seconds: float = 1.0,
        on_update: JobCallback | None = None,
    ) -> dict[str, Any]:
        """Poll until the job ends and return it. ``on_update`` sees every polled state (its
        ``progress`` has the epoch, the fraction done and an ETA). Raises WaitTimeout after
        ``timeout`` seconds; the job goes on."""
        return self._wait(
            lambda: self.job(job_id), f"job {_id(job_id, 'job')}", timeout, poll_seconds, on_update
        )

    def stream(
        self, job_id: str | None = None, last_event_id: str | None = None
    ) -> Iterator[StreamEvent]:
        """Server-Sent Events as (id, event type, data): one job's from its first event (or
        after ``last_event_id``) until its ``end``, or, without ``job_id``, every job of the
        tenant from now on. Raises ApiError for an error answer, httpx_sse.SSEError for an
        answer that is not an event stream, httpx.TransportError when the connection fails."""
        path = f"/v1/jobs/{_id(job_id, 'job')}/stream" if job_id is not None else "/v1/stream"
        headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
        timeout = httpx.Timeout(self.http.timeout.connect, read=STREAM_READ_TIMEOUT)
        with connect_sse(self.http, "GET", path, headers=headers, timeout=timeout) as source:
            if source.response.status_code >= 400:
                source.response.read()
                raise ApiError.from_response(source.response)
            for sse in source.iter_sse():
                if sse.data:  # a keep-alive comment ends as an empty event: not one
                    yield (sse.id or None), sse.event, json.loads(sse.data)

    # Artifacts

    def artifacts(self, job_id: str) -> list[dict[str, Any]]:
        """The job's files: name, kind, size and sha256 of each."""
        return self._items(f"/v1/jobs/{_id(job_id, 'job')}/artifacts")

    def checkpoints(self, job_id: str) -> list[dict[str, Any]]:
        """The job's kept checkpoints, oldest first: epoch, step, that epoch's metrics, and the
        artifact ``name``, ``size_bytes`` and ``sha256`` of each."""
        return self._items(f"/v1/jobs/{_id(job_id, 'job')}/checkpoints")

    def download(self, job_id: str, out_dir: str | Path) -> list[Path]:
        """Fetch every artifact into ``out_dir`` (created if needed), each checked against the
        sha256 the service lists for it; returns the paths. A file that does not match is
        removed and raises ArtifactIntegrityError."""
        folder = Path(out_dir).expanduser()
        listed = self.artifacts(job_id)  # first: a job that is not there leaves no empty folder
        if listed:
            folder.mkdir(parents=True, exist_ok=True)
        return [self._download_one(job_id, item, folder) for item in listed]

    def _download_one(self, job_id: str, item: dict[str, Any], out_dir: Path) -> Path:
        name = Path(item["name"]).name  # never let a server-supplied name leave out_dir
        target, partial = out_dir / name, out_dir / f".{name}.partial"
        digest = hashlib.sha256()
        # A server on object storage may answer with a redirect to a presigned URL of the store
        # (another origin: httpx does not send the API key there); the bytes are checked the same.
        path = f"/v1/jobs/{_id(job_id, 'job')}/artifacts/{quote(name, safe='')}"
        with self.http.stream("GET", path, follow_redirects=True) as response:
            if response.status_code >= 400:
                response.read()
                raise ApiError.from_response(response)
            with partial.open("wb") as file:
                for chunk in response.iter_bytes():
                    digest.update(chunk)
                    file.write(chunk)
        if digest.hexdigest() != item["sha256"]:
            partial.unlink()
            raise ArtifactIntegrityError(
                f"{name}: sha256 {digest.hexdigest()} != listed {item['sha256']}"
            )
        partial.replace(target)
        return target

    # Datasets

    def upload_dataset(
        self,
        path: str | Path,
        name: str | None = None,
        *,
        direct: bool | None = None,
        **fields: str,
    ) -> dict[str, Any]:
        """Upload an .npz, CSV or zip file; ``fields`` are label_column or image_size. The
        service checks it before answering; use the returned ``id`` as a job's dataset.

        ``direct=True`` sends the bytes straight to the server's object storage (presigned
        URLs; for files larger than the server takes in one request), ``False`` through the
        API; None (default) goes direct for files over DIRECT_UPLOAD_BYTES when the server
        offers it."""
        file_path = Path(path)
        if direct is None:
            direct = file_path.stat().st_size > DIRECT_UPLOAD_BYTES and self._offers_direct()
        if direct:
            return self._upload_dataset_direct(file_path, name, fields)
        form = {key: value for key, value in {"name": name, **fields}.items() if value}
        with file_path.open("rb") as file:
            files = {"file": (file_path.name, file, "application/octet-stream")}
            return self._object("POST", "/v1/datasets", data=form, files=files)

    def _offers_direct(self) -> bool:
        """Whether the server keeps files in object storage (it says so in /readyz)."""
        try:
            return self.http.get("/readyz").json().get("object_storage") is not None
        except (httpx.HTTPError, ValueError):
            return False

    def _upload_dataset_direct(
        self, path: Path, name: str | None, fields: dict[str, str]
    ) -> dict[str, Any]:
        described = describe_file(path)
        upload = self._object(
            "POST",
            "/v1/dataset-uploads",
            json={
                "filename": path.name,
                "name": name,
                **described,
                **{key: value for key, value in fields.items() if value},
            },
        )
        try:
            etags = [
                _put_part(path, part, upload["part_bytes"], described["size_bytes"])
                for part in upload["parts"]
            ]
        except BaseException:
            self._json("DELETE", f"/v1/dataset-uploads/{upload['id']}")
            raise
        return self._object(
            "POST",
            f"/v1/dataset-uploads/{upload['id']}/complete",
            json={"etags": etags},
            timeout=DIRECT_COMPLETE_SECONDS,
        )

    def datasets(self) -> list[dict[str, Any]]:
        return self._items("/v1/datasets")

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        return self._object("GET", f"/v1/datasets/{_id(dataset_id, 'dataset')}")

    def delete_dataset(self, dataset_id: str) -> None:
        self._json("DELETE", f"/v1/datasets/{_id(dataset_id, 'dataset')}")

    # Sweeps

    def submit_sweep(self, sweep: dict[str, Any]) -> dict[str, Any]:
        """Start a search over job specs (base ``spec``, ``parameters``, ``method``,
        ``objective``, ``max_trials``, ...); its trials are ordinary jobs."""
        return self._object("POST", "/v1/sweeps", json=sweep)

    def sweep(self, sweep_id: str) -> dict[str, Any]:
        """The sweep with its trials, ``best`` (one objective) or ``pareto`` (two)."""
        return self._object("GET", f"/v1/sweeps/{_id(sweep_id, 'sweep')}")

    def sweeps(self, limit: int = 20) -> list[dict[str, Any]]:
        return self._items("/v1/sweeps", params={"limit": limit})

    def cancel_sweep(self, sweep_id: str) -> dict[str, Any]:
        return self._object("POST", f"/v1/sweeps/{_id(sweep_id, 'sweep')}/cancel")

    def delete_sweep(self, sweep_id: str) -> None:
        self._json("DELETE", f"/v1/sweeps/{_id(sweep_id, 'sweep')}")

    def wait_sweep(
        self,
        sweep_id: str,
        timeout: float = 24 * 3600.0,
        poll_seconds: float = 2.0,
        on_update: JobCallback | None = None,
    ) -> dict[str, Any]:
        """Poll until the sweep ends and return it; ``on_update`` sees every polled state."""
        label = f"sweep {_id(sweep_id, 'sweep')}"
        return self._wait(lambda: self.sweep(sweep_id), label, timeout, poll_seconds, on_update)

    # Keys and webhooks

    def create_key(self, name: str, scope: str, expires_at: str | None = None) -> dict[str, Any]:
        """A new key of this key's tenant (needs an admin key); its ``key`` is shown this once."""
        body = {"name": name, "scope": scope, "expires_at": expires_at}
        return self._object("POST", "/v1/keys", json=body)

    def keys(self) -> list[dict[str, Any]]:
        return self._items("/v1/keys")

    def revoke_key(self, key_id: str) -> None:
        self._json("DELETE", f"/v1/keys/{_id(key_id, 'key')}")

    def create_webhook(self, url: str, events: list[str]) -> dict[str, Any]:
        """An endpoint that gets signed deliveries of ``events`` (e.g. "job.succeeded"); its
        signing ``secret`` is shown this once."""
        return self._object("POST", "/v1/webhooks", json={"url": url, "events": events})

    def webhooks(self) -> list[dict[str, Any]]:
        return self._items("/v1/webhooks")

    def delete_webhook(self, webhook_id: str) -> None:
        self._json("DELETE", f"/v1/webhooks/{_id(webhook_id, 'webhook')}")

    def webhook_deliveries(self, webhook_id: str) -> list[dict[str, Any]]:
        return self._items(f"/v1/webhooks/{_id(webhook_id, 'webhook')}/deliveries")

    # Plumbing

    def _wait(
        self,
        fetch: Callable[[], dict[str, Any]],
        what: str,
        timeout: float,
        poll_seconds: float,
        on_update: JobCallback | None,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            state = fetch()
            if on_update is not None:
                on_update(state)
            if state["status"] in TERMINAL:
                return state
            if time.monotonic() > deadline:
                raise WaitTimeout(f"{what} still {state['status']} after {timeout:g} s")
            time.sleep(poll_seconds)

    def _object(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        answer = self._json(method, path, **kwargs)
        if not isinstance(answer, dict):
            raise TaasError(f"{method} {path}: expected a JSON object, got {answer!r:.200}")
        return answer

    def _items(self, path: str, **kwargs: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._object("GET", path, **kwargs)["items"]
        return items

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        if self.http.is_closed:
            raise TaasError("this Client is closed (its `with` block ended): make a new one")
        if "json" in kwargs:  # numpy numbers and datetimes, as specs built in a notebook hold
            body = json.dumps(kwargs.pop("json"), default=_json_value).encode()
            kwargs["content"] = body
            kwargs["headers"] = {**kwargs.get("headers", {}), "Content-Type": "application/json"}
        response = self.http.request(method, path, **kwargs)
        for _ in range(RATE_LIMIT_RETRIES):
            if response.status_code != 429 or "Retry-After" not in response.headers:
                break
            time.sleep(_retry_after(response))
            response = self.http.request(method, path, **kwargs)
        if not response.is_success:  # a redirect too: the API answers none to a right path
            raise ApiError.from_response(response)
        return response.json() if response.content else None


def _id(value: Any, kind: str) -> str:
    """An id as one URL path segment. A job, dataset or sweep dict stands for its ``id`` (the
    common slip of passing what ``submit`` returned); an empty id is refused here, where it
    would otherwise name the collection."""
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        value = value["id"]
    if not isinstance(value, str) or not value:
        raise InvalidId(f"expected a {kind} id (a non-empty string), got {value!r:.100}")
    return quote(value, safe="")


def _json_value(value: Any) -> Any:
    """What json.dumps does not know: numpy numbers and arrays, dates and times."""
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # numpy, without importing it
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON: pass numbers, strings, lists and dicts")


def _checked_url(url: str) -> str:
    """The service's root URL, refused early when it cannot be one."""
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise TaasError(f"url {url!r} is not an http(s) address such as http://127.0.0.1:8000")
    if parsed.path.rstrip("/").endswith("/v1"):
        raise TaasError(
            f"url {url!r} ends in /v1: give the service's root (the client adds /v1 itself)"
        )
    return url.rstrip("/")


class _ExplainedTransport(httpx.HTTPTransport):
    """A refused connection says where the client tried and what to check, as ServiceUnreachable
    (still an httpx.ConnectError for code that catches those)."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().handle_request(request)
        except httpx.TimeoutException as error:
            where = f"{request.url.scheme}://{request.url.netloc.decode()}"
            raise ServiceTimeout(
                f"{where} did not answer {request.method} {request.url.path} in time ({error}); "
                "Client(timeout=...) waits longer",
                request=request,
            ) from error
        except httpx.ConnectError as error:
            where = f"{request.url.scheme}://{request.url.netloc.decode()}"
            raise ServiceUnreachable(
                f"cannot reach {where} ({error}): is the taas server running there? "
                "(Client(url=...) or TAAS_API_URL says where it is)",
                request=request,
            ) from error


def describe_file(path: Path) -> dict[str, Any]:
    """Size, sha256, and the sha256 of each part of PART_BYTES, as a presigned upload needs."""
    size = path.stat().st_size
    whole, parts = hashlib.sha256(), []
    for index in range(max(1, -(-size // PART_BYTES))):
        part = hashlib.sha256()
        for chunk in _file_chunks(path, index * PART_BYTES, PART_BYTES):
            part.update(chunk)
            whole.update(chunk)
        parts.append(part.hexdigest())
    return {"size_bytes": size, "sha256": whole.hexdigest(), "part_sha256": parts}


def _put_part(path: Path, part: dict[str, Any], part_bytes: int, size_bytes: int) -> str:
    """PUT one part to its presigned URL (a few tries: stores throttle with 503); its ETag."""
    offset = (part["number"] - 1) * part_bytes
    length = min(part_bytes, size_bytes - offset)
    headers = {**part["headers"], "Content-Length": str(length)}
    for attempt in range(1, PART_ATTEMPTS + 1):
        try:
            response = httpx.put(
                part["url"],
                content=_file_chunks(path, offset, length),
                headers=headers,
                timeout=httpx.Timeout(30.0, write=300.0),
            )
        except httpx.TransportError:
            if attempt == PART_ATTEMPTS:
                raise
            time.sleep(2**attempt)
            continue
        if response.status_code >= 500 and attempt < PART_ATTEMPTS:
            time.sleep(2**attempt)
            continue
        if response.status_code >= 400:
            raise TaasError(f"storage refused part {part['number']}: {response.text[:300]}")
        return str(response.headers["etag"])
    raise AssertionError("unreachable")


def _file_chunks(path: Path, offset: int, length: int) -> Iterator[bytes]:
    with path.open("rb") as file:
        file.seek(offset)
        while length > 0 and (chunk := file.read(min(1024 * 1024, length))):
            length -= len(chunk)
            yield chunk


def _key_from_environment() -> str:
    key = os.environ.get("TAAS_API_KEY")
    if key:
        return key
    key_file = Path(os.environ.get("TAAS_HOME") or ".taas") / "api_key"
    try:
        return key_file.read_text(encoding="utf-8").strip()
    except OSError:
        raise TaasError(
            f"no API key: pass api_key=, set TAAS_API_KEY, or run where {key_file} exists"
        ) from None


def _retry_after(response: httpx.Response) -> float:
    try:
        seconds = float(response.headers["Retry-After"])
    except ValueError:
        seconds = 1.0  # an HTTP date: not sent by this server, so wait a little and see
    return min(max(seconds, 0.0), RATE_LIMIT_WAIT_CAP)
