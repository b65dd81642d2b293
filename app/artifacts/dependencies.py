from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from taas.app.artifacts.storage import ArtifactStorage
from taas.app.storage.factory import get_object_store
from taas.app.storage.objects import ObjectStore


def get_storage() -> ArtifactStorage:
    return ArtifactStorage(get_object_store())


StorageDep = Annotated[ArtifactStorage, Depends(get_storage)]
ObjectStoreDep = Annotated[ObjectStore, Depends(get_object_store)]
