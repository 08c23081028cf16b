"""Choose the object store from the settings: S3 when an endpoint is set, else a local folder."""

from __future__ import annotations

from plexica.settings import Settings
from plexica.storage.local import LocalStore
from plexica.storage.store import ObjectStore


def store_from_settings(settings: Settings) -> ObjectStore:
    if settings.storage_endpoint is not None:
        if not settings.storage_access_key or not settings.storage_secret_key:
            raise ValueError("PLEXICA_STORAGE_ACCESS_KEY and _SECRET_KEY are required with S3")
        # botocore takes half a second to import; the embedded mode never needs it.
        from plexica.storage.s3 import S3Store

        return S3Store(
            str(settings.storage_endpoint),
            settings.storage_access_key,
            settings.storage_secret_key,
        )
    return LocalStore(settings.data_dir / "storage")
