"""The object store the settings name, one per process (clients are thread-safe and reused)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from taas.app.core.config import Settings, get_settings
from taas.app.storage.filesystem import FileObjectStore
from taas.app.storage.health import forget_readings
from taas.app.storage.objects import ObjectStore


def store_for(settings: Settings) -> ObjectStore:
    if settings.storage_url:
        return _s3_store(settings.storage_url, settings.home.resolve() / "staging")
    return FileObjectStore(settings.resolved_artifact_dir, settings.resolved_dataset_dir)


@lru_cache(maxsize=8)
def _s3_store(url: str, staging: Path) -> ObjectStore:
    from taas.app.storage.s3 import S3ObjectStore  # boto3 loads only where S3 is configured

    return S3ObjectStore(url, staging)


def get_object_store() -> ObjectStore:
    return store_for(get_settings())


def clear_storage_caches() -> None:
    """Forget the clients and health readings (tests switch settings between stores)."""
    _s3_store.cache_clear()
    forget_readings()
