"""What the sweep routes take and return."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from taas.app.jobs.schemas import JobStatus

SweepStatus = Literal["running", "succeeded", "failed", "cancelled"]
Metric = Literal["val_accuracy", "val_loss", "train_seconds"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Objective(Strict):
    metric: Metric
    goal: Literal["maximize", "minimize"]


class Bound(Strict):
    min: float | None = None
    max: float | None = None


class MedianStopping(Strict):
    method: Literal["median"]
    min_epochs: int = Field(default=1, ge=1, description="never stop a trial before this epoch")
    min_trials: int = Field(default=3, ge=1, description="other trials needed at that epoch")


class AshaStopping(Strict):
    method: Literal["asha"]
    min_epochs: int = Field(default=1, ge=1, description="the first rung, in epochs")
    reduction_factor: int = Field(default=3, ge=2, le=10)


EarlyStopping = Annotated[MedianStopping | AshaStopping, Field(discriminator="method")]


class SweepIn(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    spec: dict[str, Any] = Field(
        description="the base job spec (defaults as for jobs); trials validate on a holdout of "
        "the training split unless it sets training.validate_on",
        # A job spec needs its dataset; the document says so, as the server enforces it.
        json_schema_extra={"required": ["dataset"], "properties": {"dataset": {"type": "string"}}},
    )
    parameters: dict[str, dict[str, Any]] = Field(
        description='dotted spec path -> {"values": [...]} or {"min", "max", "scale": '
        '"linear"|"log", "type": "float"|"int"}'
    )
    method: Literal["grid", "random", "tpe"] = "random"
    objective: Objective | list[Objective] = Field(
        description="one objective, or two for a Pareto search"
    )
    constraint: dict[Metric, Bound] | None = Field(
        default=None,
        description='e.g. {"val_accuracy": {"min": 0.9}}: trials outside it '
        "are not candidates for best or pareto",
    )
    max_trials: int = Field(default=10, ge=1, le=1000)
    max_parallel: int = Field(default=2, ge=1, le=100)
    max_seconds: float | None = Field(default=None, gt=0)
    max_failures: int = Field(default=3, ge=1, le=1000)
    seed: int = Field(default=0, ge=0, lt=2**31)
    early_stopping: EarlyStopping | None = Field(
        default=None,
        description="stop trials that fall behind on the first validation objective; a "
        'stopped trial ends succeeded with stop_reason "pruned", its model kept',
    )

    def objectives(self) -> list[Objective]:
        return self.objective if isinstance(self.objective, list) else [self.objective]


class TrialOut(BaseModel):
    job_id: str
    number: int
    status: JobStatus
    params: dict[str, Any]
    values: list[float] | None = Field(
        description="the objective values, in the sweep's order; null until the trial ended"
    )
    metrics: dict[str, float | None] = Field(
        description="val_accuracy and val_loss of its latest epoch, train_seconds so far"
    )
    within_constraint: bool | None = Field(
        description="whether it meets the sweep's constraint (true without one); null until "
        "the trial ended"
    )
    epochs_trained: int
    stop_reason: str | None
    test_accuracy: float | None


class SweepOut(BaseModel):
    id: str
    name: str
    status: SweepStatus
    reason: str | None
    method: str
    objective: list[Objective]
    constraint: dict[str, Bound] | None
    parameters: dict[str, dict[str, Any]]
    spec: dict[str, Any]
    max_trials: int
    max_parallel: int
    max_seconds: float | None
    max_failures: int
    seed: int
    early_stopping: dict[str, Any] | None
    created_at: datetime
    finished_at: datetime | None
    counts: dict[str, int] = Field(description="trials by status")
    trials: list[TrialOut]
    best: TrialOut | None = Field(
        description="the best trial (one objective), within the constraint"
    )
    pareto: list[TrialOut] | None = Field(description="the non-dominated trials (two objectives)")


class SweepList(BaseModel):
    items: list[SweepOut]
