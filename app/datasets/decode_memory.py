"""Room to validate an upload. Validation decodes the file's arrays into memory (about the size
of an uncompressed .npz; measured: 1.05 times the file over the API's own ~150 MiB), so before
it starts the API checks that this host has that much: an upload it can never decode is refused
(413) before its bytes are sent where the size is known in advance, and one that must wait for
memory gets 503 with Retry-After, instead of the kernel's OOM killer ending the API process and
every request it serves."""

from __future__ import annotations

from taas.app.core import kernel_memory
from taas.app.core.errors import DomainError, PayloadTooLarge

DECODE_FACTOR = 1.25  # room over the measured 1.05: compressed members decode to more
MARGIN_BYTES = 64 * 1024 * 1024
MIB = 1024 * 1024


class NotEnoughMemory(DomainError):
    """503: this API host lacks the memory to validate the upload now; it may have it later."""

    status_code = 503
    retry_after_seconds = 30


def memory_to_decode(size_bytes: int) -> int:
    return int(size_bytes * DECODE_FACTOR) + MARGIN_BYTES


def require_memory_to_decode(size_bytes: int, *, now: bool = True) -> None:
    """Refuse (413) an upload larger than this host could ever decode, and, with ``now``, ask
    for a retry (503) while the memory free now is too little."""
    need = memory_to_decode(size_bytes)
    free, total, limited = kernel_memory.host_memory()
    where = "its memory limit" if limited else "this host's memory"
    if need > total:
        raise PayloadTooLarge(
            f"validating an upload of {size_bytes // MIB} MiB needs about {need // MIB} MiB of "
            f"memory, more than {where} ({total // MIB} MiB): split the dataset, or run the "
            "API with more memory"
        )
    if now and need > free:
        raise NotEnoughMemory(
            f"validating an upload of {size_bytes // MIB} MiB needs about {need // MIB} MiB of "
            f"memory; {free // MIB} MiB of {where} is free now: retry later"
        )
