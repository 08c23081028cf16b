"""Content types from magic bytes, and the allow-list of types a tenant may store.

The bytes decide, not the client: a declared type is accepted only when it agrees with what the
first bytes show, so that an executable or an HTML page cannot be stored as ``image/png``.
"""

from __future__ import annotations

from plexica.storage.errors import UnsupportedContentTypeError

SNIFF_BYTES = 512
OCTET_STREAM = "application/octet-stream"

# (offset, magic, type). Order matters: the first match wins.
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"PK\x03\x04", "application/zip"),
    (0, b"PK\x05\x06", "application/zip"),
    (0, b"\x1f\x8b", "application/gzip"),
    (0, b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (0, b"\x7fELF", "application/x-executable"),
    (0, b"MZ", "application/x-msdownload"),
    (0, b"\xcf\xfa\xed\xfe", "application/x-mach-binary"),
    (0, b"\xfe\xed\xfa\xcf", "application/x-mach-binary"),
    (0, b"#!", "text/x-shellscript"),
    (0, b"OggS", "audio/ogg"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"\x1aE\xdf\xa3", "video/webm"),
)
_HTML_MARKERS = (b"<!doctype html", b"<html", b"<script", b"<svg", b"<?xml")
_TEXT_TYPES = frozenset({"text/plain", "text/csv", "text/markdown", "application/json"})

DEFAULT_ALLOWED = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "application/pdf",
        "application/zip",
        "application/gzip",
        "text/plain",
        "text/csv",
        "text/markdown",
        "application/json",
        OCTET_STREAM,
    }
)


def sniff(head: bytes) -> str:
    """The type the first bytes show; ``text/plain`` for UTF-8 text, octet-stream otherwise."""
    for offset, magic, content_type in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return content_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp":
        return "video/mp4"
    lowered = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if lowered.startswith(_HTML_MARKERS):
        return "text/html"
    if _is_text(head):
        return "text/plain"
    return OCTET_STREAM


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The sample may end inside a multi-byte character.
        return exc.start >= len(head) - 3 and exc.reason == "unexpected end of data"
    return True


def _base(content_type: str | None) -> str | None:
    if content_type is None:
        return None
    base = content_type.split(";", 1)[0].strip().lower()
    return base or None


def resolve_content_type(
    head: bytes, declared: str | None, allowed: frozenset[str] = DEFAULT_ALLOWED
) -> str:
    """The type to store, or UnsupportedContentTypeError (415) when refused or contradicted."""
    detected = sniff(head)
    claimed = _base(declared)
    if claimed == OCTET_STREAM:
        claimed = None
    if detected == "text/plain":
        chosen = claimed if claimed in _TEXT_TYPES else "text/plain"
        if claimed is not None and claimed not in _TEXT_TYPES:
            raise UnsupportedContentTypeError(
                f"the content is text but was declared {claimed}",
                details={"declared": claimed, "detected": detected},
            )
    else:
        chosen = detected
        if claimed is not None and detected not in (claimed, OCTET_STREAM):
            raise UnsupportedContentTypeError(
                f"the content is {detected} but was declared {claimed}",
                details={"declared": claimed, "detected": detected},
            )
        if detected == OCTET_STREAM and claimed is not None:
            # Bytes without a signature we know: refuse a claim we cannot check.
            raise UnsupportedContentTypeError(
                f"the content does not look like {claimed}",
                details={"declared": claimed, "detected": detected},
            )
    if chosen not in allowed:
        raise UnsupportedContentTypeError(
            f"content type {chosen} is not allowed", details={"detected": chosen}
        )
    return chosen
