"""The input guard lets a query parameter repeat only where a route takes it as a list."""

from __future__ import annotations

from typing import Annotated

import httpx
from fastapi import Query

from plexica_sdk.service import create_service_app


def _app() -> httpx.AsyncClient:
    app = create_service_app("test", title="t", version="0")

    @app.get("/items")
    async def items(
        limit: int = 10, key: Annotated[list[str] | None, Query()] = None
    ) -> dict[str, object]:
        return {"limit": limit, "key": key}

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_a_scalar_parameter_given_twice_is_refused() -> None:
    async with _app() as http:
        r = await http.get("/items?limit=1&limit=2")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "duplicate_parameter"


async def test_a_list_parameter_may_repeat() -> None:
    async with _app() as http:
        r = await http.get("/items?key=a&key=b&limit=3")
    assert r.status_code == 200
    assert r.json() == {"limit": 3, "key": ["a", "b"]}
