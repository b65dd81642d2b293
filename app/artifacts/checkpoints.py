"""How a checkpoint artifact is named: by the last epoch it completes."""

from __future__ import annotations

import re

from taas.app.artifacts.models import Artifact

# Checkpoints are named by the last epoch they complete, so a resumed attempt that redoes an
# epoch replaces that epoch's checkpoint instead of keeping two; one saved when a worker was
# preempted mid-epoch holds its position in the next epoch and replaces its epoch's too.
CHECKPOINT_NAME = re.compile(r"^checkpoint-epoch(\d{1,6})\.pt$")


def checkpoint_epoch(artifact: Artifact) -> int:
    """The epoch a checkpoint artifact was saved after, from its name."""
    match = CHECKPOINT_NAME.match(artifact.name)
    return int(match.group(1)) if match else -1
