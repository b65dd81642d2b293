"""How numbers read in every message, the same in the API's words, the CLI and the dashboard
(app/dashboard/static/js/format.js mirrors these)."""

from __future__ import annotations

BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def byte_size(count: int) -> str:
    """Binary units, one decimal above bytes: ``1.2 MiB``, as the dashboard shows them."""
    value, unit = float(count), 0
    while value >= 1024 and unit < len(BYTE_UNITS) - 1:
        value /= 1024
        unit += 1
    return f"{count} B" if unit == 0 else f"{value:.1f} {BYTE_UNITS[unit]}"


def counted(count: int, noun: str) -> str:
    """``1 epoch``, ``2 epochs``: the noun in the plural unless there is exactly one."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
