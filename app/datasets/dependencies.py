from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from taas.app.core.config import get_settings
from taas.app.datasets.storage import DatasetStorage
from taas.app.storage.factory import store_for


def get_dataset_storage() -> DatasetStorage:
    settings = get_settings()
    return DatasetStorage(store_for(settings), settings.resolved_dataset_dir / ".staging")


DatasetStorageDep = Annotated[DatasetStorage, Depends(get_dataset_storage)]
