"""Bounded paging parameters for list routes: a client never asks for an unbounded page."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

MAX_PAGE_SIZE = 200
MAX_OFFSET = 1_000_000

PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Items per page.")]
PageOffset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip.")]

__all__ = ["MAX_OFFSET", "MAX_PAGE_SIZE", "PageOffset", "PageSize"]
