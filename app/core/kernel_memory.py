"""What the kernel says about this process's memory: free RAM, its cgroup's limit, OOM kills.

Plain file reads (no PyTorch), so the OOM watcher (worker/resources/oom_watch.py) stays small.
"""

from __future__ import annotations

import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
NO_LIMIT = 2**60  # cgroup v1 reports "no limit" as a page-rounded 2**63


def meminfo() -> dict[str, int]:
    values = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        values[name] = int(rest.split()[0]) * 1024  # kB
    return values


def resident_bytes() -> int:
    fields = Path("/proc/self/statm").read_text().split()
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")


def cgroup_room() -> tuple[int, int] | None:
    """(limit - working set, limit) of this process's memory cgroup, v2 or v1; None without a
    limit. The working set leaves out inactive page cache, which the kernel reclaims first."""
    for folder, limit_file, usage_file, inactive in (
        (cgroup_folder("0", ""), "memory.max", "memory.current", "inactive_file"),
        (
            cgroup_folder("memory", "memory"),
            "memory.limit_in_bytes",
            "memory.usage_in_bytes",
            "total_inactive_file",
        ),
    ):
        if folder is None or not (folder / limit_file).is_file():
            continue
        text = (folder / limit_file).read_text().strip()
        if text == "max" or int(text) >= NO_LIMIT:
            return None
        limit = int(text)
        usage = int((folder / usage_file).read_text()) - _stat(folder, inactive)
        return max(limit - usage, 0), limit
    return None


def cgroup_folder(controller: str, mount: str) -> Path | None:
    """This process's cgroup folder for ``controller`` ("0": the v2 unified hierarchy)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        number, controllers, path = line.split(":", 2)
        if (controller == "0" and number == "0") or controller in controllers.split(","):
            return CGROUP_ROOT / mount / path.lstrip("/")
    return None


def _stat(folder: Path, name: str) -> int:
    for line in (folder / "memory.stat").read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            return int(value)
    return 0


def oom_kill_counts() -> dict[str, int]:
    """The kernel's OOM-kill counter that speaks for this process: its memory cgroup's (v2
    memory.events.local, else memory.events; v1 memory.oom_control). The kernel adds one there
    when it kills a process of the cgroup for memory, whether the cgroup or the whole machine ran
    out. Only where no such counter can be read (no memory controller, or the root cgroup) the
    machine's count (/proc/vmstat), which any process's OOM kill moves: on a busy machine a worker
    killed by hand at the same moment would then be taken for one killed for memory."""
    for controller, mount, names in (
        ("0", "", ("memory.events.local", "memory.events")),
        ("memory", "memory", ("memory.oom_control",)),
    ):
        folder = cgroup_folder(controller, mount)
        if folder is None or folder == CGROUP_ROOT / mount:
            continue  # no cgroup of its own: the root's counters are the machine's
        for name in names:
            count = _oom_kill_count(folder / name)
            if count is not None:
                return {str(folder / name): count}
    count = _oom_kill_count(Path("/proc/vmstat"))
    return {} if count is None else {"/proc/vmstat": count}


def _oom_kill_count(source: Path) -> int | None:
    try:
        lines = source.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return int(value)
    return None


def host_memory() -> tuple[int, int, bool]:
    """(free, total, limited) bytes for this process: the host's MemAvailable and MemTotal, or
    its cgroup's room and limit where the room is less (``limited``): a container sees the
    host's MemAvailable."""
    memory = meminfo()
    free, total = memory["MemAvailable"], memory["MemTotal"]
    room = cgroup_room()
    if room is not None and room[0] < free:
        return room[0], room[1], True
    return free, total, False
