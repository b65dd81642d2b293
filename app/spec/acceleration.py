"""How the trainer may speed a job up (``acceleration``): each switch on, off, or its choice."""

from __future__ import annotations

from pydantic import Field

from taas.app.spec.base import StrictModel


class AccelerationSpec(StrictModel):
    """Explicit switches; ``None`` means "let the trainer decide for this device"."""

    data_on_device: bool | None = Field(default=None, description="uint8 data on the device")
    amp: bool | None = Field(default=None, description="bf16 autocast")
    channels_last: bool | None = None
    pool_first: bool | None = Field(
        default=None, description="max-pool before a non-decreasing activation (cnn)"
    )
    fused_optimizer: bool | None = None
    compile: bool | None = Field(default=None, description="torch.compile (CUDA)")
    cuda_graphs: bool | None = Field(default=None, description="CUDA graphs (with compile)")
    threads: int | None = Field(default=None, ge=1, le=512, description="CPU threads")
