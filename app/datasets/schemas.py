"""What the dataset routes return (the v1 contract)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class DatasetOut(BaseModel):
    id: str = Field(description="a built-in's name, or `ds_...` for an upload")
    name: str
    kind: Literal["builtin", "uploaded"]
    available: bool = Field(description="whether a job on it can run on this server now")
    reason: str = Field(description="why it is (not) available")
    shape: list[int] = Field(description="(C, H, W) of one sample; feature vectors are (D, 1, 1)")
    num_classes: int
    class_names: list[str]
    train_size: int
    test_size: int = Field(description="0: jobs hold out training.val_fraction as the test split")
    format: Literal["npz", "csv", "zip"] | None = Field(description="what was uploaded")
    dtype: Literal["uint8", "float32"] | None = Field(description="how samples are stored")
    sha256: str | None = Field(description="of the stored canonical file")
    size_bytes: int | None = None
    created_at: datetime | None = None


class DatasetList(BaseModel):
    items: list[DatasetOut]
