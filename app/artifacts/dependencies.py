from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from taas.app.artifacts.storage import ArtifactStorage, LocalArtifactStorage
from taas.app.core.config import get_settings


def get_storage() -> ArtifactStorage:
    return LocalArtifactStorage(get_settings().resolved_artifact_dir)


StorageDep = Annotated[ArtifactStorage, Depends(get_storage)]
