from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from taas.app.core.config import get_settings
from taas.app.datasets.storage import DatasetStorage


def get_dataset_storage() -> DatasetStorage:
    return DatasetStorage(get_settings().resolved_dataset_dir)


DatasetStorageDep = Annotated[DatasetStorage, Depends(get_dataset_storage)]
