"""Storage errors with stable codes."""

from __future__ import annotations

from plexica_sdk.errors import PlexicaError


class InvalidKeyError(PlexicaError):
    status, code = 400, "invalid_key"


class ObjectTooLargeError(PlexicaError):
    status, code = 413, "object_too_large"


class QuotaExceededError(PlexicaError):
    status, code = 413, "quota_exceeded"


class UnsupportedContentTypeError(PlexicaError):
    status, code = 415, "unsupported_media_type"


class KeyConflictError(PlexicaError):
    status, code = 409, "key_conflict"


class InvalidSignatureError(PlexicaError):
    status, code = 403, "invalid_signature"


class StorageUnavailableError(PlexicaError):
    status, code = 503, "storage_unavailable"
