"""Jobs sharing a GPU (`--jobs-per-gpu`) divide its memory through a ledger file: small jobs run
side by side, a big one waits for room, one too big for the GPU is refused, and a dead job's
share is freed. No GPU needed (the ledger only does arithmetic on the sizes it is given), but for
the last test, which checks the cap on a real GPU."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from taas.worker.resources.gpu_share import USABLE_FRACTION, GpuShare, GpuTooSmall

GIB = 1 << 30


def share(tmp_path: Path, jobs_per_gpu: int = 4) -> GpuShare:
    return GpuShare(tmp_path / "shares", "0", 16 * GIB, jobs_per_gpu)


def never() -> bool:
    return False


def test_small_jobs_run_side_by_side_and_one_more_waits(tmp_path: Path) -> None:
    gpu = share(tmp_path)
    slot = int(16 * GIB * USABLE_FRACTION) // 4
    assert [gpu.reserve(f"job{n}", GIB, never, print) for n in range(4)] == [slot] * 4

    waits: list[str] = []
    checks = iter([False, False, True])  # the fifth job is cancelled after two looks
    fifth = gpu.reserve("job4", GIB, lambda: next(checks), waits.append, poll_seconds=0.01)

    assert fifth is None
    assert len(waits) == 1
    assert "waiting for 3.7 GiB of GPU 0" in waits[0]
    assert "hold 14.7 GiB" in waits[0]


def test_a_big_job_waits_until_the_others_leave_it_room(tmp_path: Path) -> None:
    gpu = share(tmp_path)
    for n in range(3):
        gpu.reserve(f"small{n}", GIB, never, print)
    reserved: list[int | None] = []
    waits: list[str] = []
    big = threading.Thread(
        target=lambda: reserved.append(
            gpu.reserve("big", 8 * GIB, never, waits.append, poll_seconds=0.01)
        )
    )
    big.start()
    time.sleep(0.2)
    assert not reserved  # 3 x 3.7 GiB held: 9.6 GiB does not fit beside them
    assert waits
    gpu.release("small0")
    gpu.release("small1")
    big.join(timeout=5)

    assert reserved == [int(8 * GIB * 1.2)]
    assert gpu.held_by_others("nobody") == int(8 * GIB * 1.2) + int(16 * GIB * USABLE_FRACTION) // 4


def test_a_job_bigger_than_the_gpu_is_refused_with_the_sizes(tmp_path: Path) -> None:
    with pytest.raises(GpuTooSmall, match=r"needs 18\.0 GiB .* GPU 0 has for jobs \(14\.7 GiB\)"):
        share(tmp_path).reserve("huge", 15 * GIB, never, print)


def test_the_share_of_a_job_whose_process_died_is_free_again(tmp_path: Path) -> None:
    gpu = share(tmp_path, jobs_per_gpu=1)  # one job takes the whole GPU
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(gone.stdout)
    ledger = tmp_path / "shares" / "gpu0.json"
    ledger.parent.mkdir(parents=True)
    ledger.write_text(json.dumps({"killed": {"bytes": 14 * GIB, "pid": dead_pid}}))

    assert gpu.reserve("next", GIB, never, print) == int(16 * GIB * USABLE_FRACTION)
    assert set(json.loads(ledger.read_text())) == {"next"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_real_gpu_the_share_caps_what_the_process_may_allocate(tmp_path: Path) -> None:
    """What the worker does with a share (worker/training.py): reserve it, then cap the process
    with set_per_process_memory_fraction. More than the share is refused; less is not."""
    total = torch.cuda.mem_get_info()[1]
    gpu = GpuShare(tmp_path / "shares", "0", total, jobs_per_gpu=8)
    reserved = gpu.reserve("job_a", GIB, never, print)
    assert reserved is not None
    torch.cuda.set_per_process_memory_fraction(reserved / total)
    try:
        with pytest.raises(torch.cuda.OutOfMemoryError):
            torch.empty(reserved + GIB, dtype=torch.uint8, device="cuda")
        fits = torch.empty(reserved // 2, dtype=torch.uint8, device="cuda")
        assert fits.numel() == reserved // 2
        del fits
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
        gpu.release("job_a")
