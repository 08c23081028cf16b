"""Optimistic concurrency for a record API (ADR 0226): an ``ETag`` derived from the record's
version, and ``If-Match`` checked against the row read under its lock.

A route answers ``ETag`` on a read or a change of one record (``etag(row.version)``), takes the
``IfMatch`` header on ``PATCH``/``DELETE`` and hands it to its service, which calls
``check_if_match`` once it holds the row's lock and before it writes anything. Without
``If-Match`` the request applies as it always did.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Header

from plexica_sdk.errors import PreconditionFailedError

IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description=(
            "Apply only if the record's current ETag is one of these (`*`: any). A stale"
            " or unknown tag is answered 412 `precondition_failed` and changes nothing."
        ),
    ),
]

# A strong entity tag, a weak one (never matches: If-Match compares strongly) or "*".
_TAG = re.compile(r'\s*(?:(W/)?("[\x21\x23-\x7e\x80-\xff]*")|(\*))\s*(?:,|$)')

# The ``responses`` entries of the routes that take or answer a validator.
ETAG_HEADER: dict[str, Any] = {
    "ETag": {
        "description": "The record's current version, for `If-Match` (a strong validator).",
        "required": True,
        "schema": {"type": "string"},
    }
}
PRECONDITION_FAILED: dict[int | str, dict[str, Any]] = {
    412: {"description": "`If-Match` does not match the record's current ETag"}
}


def etag(version: int) -> str:
    """The strong validator of a record at ``version`` (an integer its table bumps on every
    change of the row)."""
    return f'"{version}"'


def if_match_allows(header: str | None, current: str) -> bool:
    """Whether ``If-Match: header`` lets a request change the record whose ETag is
    ``current``. No header: yes. A value that is not a list of entity tags: no."""
    if header is None:
        return True
    pos, text = 0, header.strip()
    if not text:
        return False
    while pos < len(text):
        m = _TAG.match(text, pos)
        if m is None or m.end() == pos:
            return False
        weak, tag, star = m.groups()
        if star or (tag == current and not weak):
            return True
        pos = m.end()
    return False


def check_if_match(header: str | None, current: str) -> None:
    """Raise 412 ``precondition_failed`` unless ``if_match_allows(header, current)``; call it
    under the row's lock, before any write."""
    if not if_match_allows(header, current):
        raise PreconditionFailedError(
            "the record has changed since it was read (If-Match does not match its ETag)"
        )


__all__ = [
    "ETAG_HEADER",
    "PRECONDITION_FAILED",
    "IfMatch",
    "check_if_match",
    "etag",
    "if_match_allows",
]
