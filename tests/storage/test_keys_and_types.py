"""Key validation and content-type sniffing: pure rules, no server."""

from __future__ import annotations

import pytest

from plexica.storage.errors import InvalidKeyError, UnsupportedContentTypeError
from plexica.storage.keys import validate_key
from plexica.storage.sniff import resolve_content_type, sniff

BAD_KEYS = [
    "",
    "..",
    "../x",
    "a/../../x",
    "a/./b",
    "./a",
    "a//b",
    "/etc/passwd",
    "C:/windows",
    "a\\..\\b",
    "a\x00b",
    "a\nb",
    "a\x7fb",
    "a\u202eb",
    "a/" + "x" * 256,
    "x/" * 600,
    "a/",
]

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
PDF = b"%PDF-1.7\n" + b"x" * 100
ELF = b"\x7fELF\x02\x01\x01" + b"\x00" * 100


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidKeyError) as exc:
        validate_key(key)
    assert exc.value.status == 400
    assert exc.value.code == "invalid_key"


def test_keys_are_nfc_normalised() -> None:
    assert validate_key("cafe\u0301/r\u00e9sum\u00e9.pdf") == "caf\u00e9/r\u00e9sum\u00e9.pdf"
    assert validate_key("a/b c/d.txt") == "a/b c/d.txt"
    assert validate_key("docs/", prefix=True) == "docs/"
    assert validate_key("", prefix=True) == ""


def test_sniffing_uses_the_bytes() -> None:
    assert sniff(PNG) == "image/png"
    assert sniff(PDF) == "application/pdf"
    assert sniff(b"hello, world\n") == "text/plain"
    assert sniff(b"<!DOCTYPE html><html>") == "text/html"
    assert sniff(b"\x00\x01\x02\x03") == "application/octet-stream"


def test_declared_type_must_agree_with_the_bytes() -> None:
    assert resolve_content_type(PNG, "image/png") == "image/png"
    assert resolve_content_type(PNG, None) == "image/png"
    assert resolve_content_type(b"a,b\n1,2\n", "text/csv; charset=utf-8") == "text/csv"
    assert resolve_content_type(b'{"a": 1}', "application/json") == "application/json"
    for head, declared in [
        (PDF, "image/png"),
        (ELF, None),
        (b"<html><script>x</script>", "text/plain"),
        (b"just text", "image/png"),
        (b"\x00\x01\x02", "image/png"),
    ]:
        with pytest.raises(UnsupportedContentTypeError):
            resolve_content_type(head, declared)
