"""List routes: bounded paging parameters (a client never asks for an unbounded page), the
search parameter, and the page they answer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

MAX_PAGE_SIZE = 200
MAX_OFFSET = 1_000_000

PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Items per page.")]
PageOffset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip.")]
Search = Annotated[str | None, Query(max_length=100)]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


def page_of(
    model: type[M], rows: Sequence[Mapping[str, Any]], total: int, limit: int, offset: int
) -> Page[M]:
    """The page of ``rows`` (as ``plexica_sdk.db.page`` reads them), each one a ``model``."""
    return Page(
        items=[model.model_validate(r) for r in rows], total=total, limit=limit, offset=offset
    )


__all__ = ["MAX_OFFSET", "MAX_PAGE_SIZE", "Page", "PageOffset", "PageSize", "Search", "page_of"]
