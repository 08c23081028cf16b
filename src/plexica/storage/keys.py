"""Object keys and bucket names: validated before they reach any store.

A key is relative, NFC-normalised, made of non-empty segments none of which is ``.`` or ``..``,
and free of backslashes and control characters, so that it names nothing outside its bucket on
S3 nor outside the bucket's folder on disk.
"""

from __future__ import annotations

import re
import unicodedata

from plexica.storage.errors import InvalidKeyError

MAX_KEY_BYTES = 1024
MAX_SEGMENT_BYTES = 255
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_DRIVE_RE = re.compile(r"^[A-Za-z]:")


def validate_key(key: str, *, prefix: bool = False) -> str:
    """Return the normalised key or raise InvalidKeyError (400 ``invalid_key``).

    With ``prefix=True`` an empty string and a trailing ``/`` are allowed (list prefixes).
    """
    if prefix and key == "":
        return key
    normalised = unicodedata.normalize("NFC", key)
    if not normalised:
        raise InvalidKeyError("the key is empty")
    if len(normalised.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidKeyError(f"the key is longer than {MAX_KEY_BYTES} bytes")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in normalised):
        raise InvalidKeyError("the key contains control characters")
    if "\\" in normalised:
        raise InvalidKeyError("the key contains a backslash")
    if normalised.startswith("/") or _DRIVE_RE.match(normalised):
        raise InvalidKeyError("the key is an absolute path")
    segments = normalised.split("/")
    if prefix and segments[-1] == "":
        segments = segments[:-1]
    for segment in segments:
        if segment in ("", ".", ".."):
            raise InvalidKeyError("the key has an empty, '.' or '..' segment")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise InvalidKeyError(f"a key segment is longer than {MAX_SEGMENT_BYTES} bytes")
    return normalised


def validate_bucket(bucket: str) -> str:
    if not _BUCKET_RE.match(bucket) or "--" in bucket:
        raise ValueError(f"not a valid bucket name: {bucket!r}")
    return bucket
