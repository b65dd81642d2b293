"""What every model of the spec shares (``StrictModel``), and ``Width``: a size of at least 1."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Width = Annotated[int, Field(ge=1)]


class StrictModel(BaseModel):
    """Base for every spec model: unknown fields, NaN and infinity are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
