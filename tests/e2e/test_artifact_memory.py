"""A 100 MB artifact up to and back from a real `taas api` process, in bounded memory: the upload is
hashed to disk as it streams in and the download streams from the file, so the API's resident
memory grows by far less than the artifact. `pytest -s` prints the measured numbers."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.app.artifacts import claimed_job, files_under, start_sqlite_api, upload_url
from tests.conftest import WORKER_TOKEN
from tests.e2e.conftest import Deployment

MB = 1024 * 1024
ARTIFACT_MB = 100
GROWTH_LIMIT = 50 * MB
WORKER_AUTH = {"Authorization": f"Bearer {WORKER_TOKEN}"}


def chunks() -> Iterator[bytes]:
    """100 distinct 1 MB chunks, made as they are sent (the test holds one at a time too)."""
    for index in range(ARTIFACT_MB):
        yield index.to_bytes(4, "big") * (MB // 4)


def expected_sha256() -> str:
    digest = hashlib.sha256()
    for chunk in chunks():
        digest.update(chunk)
    return digest.hexdigest()


def memory_bytes(pid: int, field: str) -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) from /proc/<pid>/status, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024  # reported in kB
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def reset_peak(pid: int) -> bool:
    """Set VmHWM back to the current RSS (Linux 4.0+; may be refused in some sandboxes)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class PeakSampler:
    """Samples VmRSS every few milliseconds: the peak still shows where VmHWM cannot be reset."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, memory_bytes(pid, "VmRSS")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, memory_bytes(self.pid, "VmRSS"))

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Measure:
    """Memory of the API process around one transfer, in bytes."""

    baseline: int
    peak_rss_sampled: int
    hwm: int
    rss_after: int
    hwm_was_reset: bool

    @property
    def growth(self) -> int:
        peak = max(self.peak_rss_sampled, self.hwm if self.hwm_was_reset else 0)
        return peak - self.baseline

    def line(self, what: str) -> str:
        mib = 1 / MB
        return (
            f"{what}: baseline VmRSS {self.baseline * mib:.1f} MiB, "
            f"peak VmRSS (sampled) {self.peak_rss_sampled * mib:.1f} MiB, "
            f"VmHWM {self.hwm * mib:.1f} MiB (reset before: {self.hwm_was_reset}), "
            f"VmRSS after {self.rss_after * mib:.1f} MiB -> growth {self.growth * mib:.1f} MiB"
        )


def measured(pid: int, transfer: Callable[[], None]) -> Measure:
    was_reset = reset_peak(pid)
    baseline = memory_bytes(pid, "VmRSS")
    with PeakSampler(pid) as sampler:
        transfer()
    return Measure(
        baseline=baseline,
        peak_rss_sampled=sampler.peak,
        hwm=memory_bytes(pid, "VmHWM"),
        rss_after=memory_bytes(pid, "VmRSS"),
        hwm_was_reset=was_reset,
    )


@pytest.fixture
def api_process(tmp_path: Path) -> Iterator[Deployment]:
    deployment = start_sqlite_api(tmp_path)
    yield deployment
    deployment.processes[0].stop()


def test_a_100_mb_artifact_goes_up_and_down_in_bounded_api_memory(
    api_process: Deployment,
) -> None:
    assert api_process.processes[0].popen is not None
    pid = api_process.processes[0].popen.pid  # `taas api` runs uvicorn in this very process
    auth = {"Authorization": f"Bearer {api_process.create_key('acme')}"}
    digest = expected_sha256()

    with httpx.Client(base_url=api_process.api_url, timeout=120) as client:
        job_id = claimed_job(client, auth, WORKER_AUTH)
        url = upload_url(job_id, "model.safetensors")
        headers = {**WORKER_AUTH, "X-Content-SHA256": digest}
        # Warm up: the first upload and download import and allocate what every later one reuses.
        warm = client.put(
            upload_url(job_id, "warmup.bin"),
            content=b"w" * MB,
            headers={**WORKER_AUTH, "X-Content-SHA256": hashlib.sha256(b"w" * MB).hexdigest()},
        )
        assert warm.status_code == 200, warm.text
        assert client.get(f"/v1/jobs/{job_id}/artifacts/warmup.bin", headers=auth).is_success

        def upload() -> None:
            response = client.put(url, content=chunks(), headers=headers)
            assert response.status_code == 200, response.text

        received = hashlib.sha256()

        def download() -> None:
            path = f"/v1/jobs/{job_id}/artifacts/model.safetensors"
            with client.stream("GET", path, headers=auth) as response:
                assert response.status_code == 200
                for piece in response.iter_bytes():
                    received.update(piece)

        up = measured(pid, upload)
        down = measured(pid, download)

    report = f"{up.line('upload')}\n{down.line('download')}"
    print(f"\n{ARTIFACT_MB} MB artifact through `taas api` (pid {pid}):\n{report}")
    assert received.hexdigest() == digest
    stored = [path.stat().st_size for path in files_under(api_process.home / "artifacts" / job_id)]
    assert sorted(stored) == [MB, ARTIFACT_MB * MB]
    assert up.growth < GROWTH_LIMIT, report
    assert down.growth < GROWTH_LIMIT, report
