"""Client input no route should see, refused before it reaches one (ADR 0135).

``InputGuard`` sits in every service's app (``create_service_app``): the core, every plugin and
the embedded edge. It refuses, in the one error shape:

- a path or query string with a NUL byte, invalid UTF-8 or more than ``max_query_params``
  parameters, or a parameter given twice that no route of the app takes as a list (400);
- a body larger than the route's limit (413; a declared ``Content-Length`` is refused before a
  byte is read, a chunked body as soon as it passes the limit);
- a JSON body that is not strict UTF-8 JSON, nests deeper than 64, has an array of more than
  10,000 items, a string with NUL or a lone surrogate, an integer beyond 64 bits or a non-finite
  number (400/422); a form body with NUL or invalid UTF-8 (400).

A route changes its limit with ``@body_limit(n)`` (``None``: the route reads a stream under its
own limit, as uploads do).
"""

from __future__ import annotations

import collections.abc
import json
import math
import re
import typing
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import unquote_to_bytes

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

KiB = 1024
MiB = 1024 * KiB
DEFAULT_BODY_LIMIT = MiB
MAX_QUERY_PARAMS = 64
MAX_JSON_DEPTH = 64
MAX_ARRAY_ITEMS = 10_000
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

F = TypeVar("F", bound=Callable[..., Any])
_LIMIT_ATTR = "__plexica_body_limit__"
_UNSET = object()
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


def body_limit(limit: int | None) -> Callable[[F], F]:
    """Give one route its own body limit in bytes; ``None`` leaves the body to the route."""

    def mark(endpoint: F) -> F:
        setattr(endpoint, _LIMIT_ATTR, limit)
        return endpoint

    return mark


class InputRejectedError(HTTPException):
    """Raised while the body is read: FastAPI passes an ``HTTPException`` through unchanged."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status_code=status, detail=message)
        self.code = code


def _bad_text(value: str) -> bool:
    return _BAD_CHARS.search(value) is not None


def check_query(
    raw: bytes, max_params: int = MAX_QUERY_PARAMS, lists: frozenset[str] | None = None
) -> InputRejectedError | None:
    """Why a raw query string is refused, or ``None``. ``lists``: the names that may repeat
    (None: any may)."""
    if not raw:
        return None
    pairs = [p for p in raw.replace(b";", b"&").split(b"&") if p]
    if len(pairs) > max_params:
        return InputRejectedError(
            400, "too_many_parameters", f"at most {max_params} query parameters are accepted"
        )
    seen: set[str] = set()
    for pair in pairs:
        try:
            text = unquote_to_bytes(pair.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            return InputRejectedError(400, "invalid_encoding", "query parameters must be UTF-8")
        if "\x00" in text:
            return InputRejectedError(400, "invalid_character", "NUL is not accepted")
        name = text.partition("=")[0]
        if lists is not None and name in seen and name not in lists:
            return InputRejectedError(
                400, "duplicate_parameter", f"query parameter {name!r} may be given only once"
            )
        seen.add(name)
    return None


_SEQUENCES = (list, tuple, set, frozenset, collections.abc.Sequence, collections.abc.Set)


def _is_sequence(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _is_sequence(typing.get_args(annotation)[0])
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_is_sequence(a) for a in typing.get_args(annotation))
    return (origin or annotation) in _SEQUENCES


def list_parameters(app: Any) -> frozenset[str] | None:
    """The query parameters that some route of ``app`` (or of an app mounted in it) takes as a
    list: only those may repeat in a query string. None when a mounted app's routes cannot be
    seen (an edge in front of other apps): their own guards decide."""
    from fastapi.dependencies.utils import get_flat_params
    from fastapi.routing import APIRoute
    from starlette.routing import Host, Mount
    from starlette.staticfiles import StaticFiles

    names: set[str] = set()
    for route in getattr(app, "routes", ()):
        if isinstance(route, APIRoute):
            for field in get_flat_params(route.dependant):
                if _is_sequence(field.field_info.annotation):
                    names.add(field.alias)
        elif isinstance(route, Mount | Host):  # a mounted app: its own routes count too
            if isinstance(route.app, StaticFiles):
                continue
            if not hasattr(route.app, "routes"):
                return None
            inner = list_parameters(route.app)
            if inner is None:
                return None
            names |= inner
    return frozenset(names)


def check_path(path: str) -> InputRejectedError | None:
    if "\x00" in path or "\ufffd" in path:
        return InputRejectedError(400, "invalid_character", "the path must be UTF-8 without NUL")
    return None


def _depth_ok(body: bytes) -> bool:
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return True
    depth = 0
    for m in _BRACKETS.finditer(_JSON_STRING.sub(b'""', body)):
        if m.group() in (b"[", b"{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return False
        else:
            depth -= 1
    return True


def _number(value: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise InputRejectedError(422, "number_out_of_range", "numbers must be finite")
    return number


def _integer(value: str) -> int:
    # Compared by length first: int() of thousands of digits is itself a cost.
    if len(value.lstrip("-")) > 19 or not INT64_MIN <= (n := int(value)) <= INT64_MAX:
        raise InputRejectedError(
            422, "number_out_of_range", "integers must fit in 64 bits (signed)"
        )
    return n


def _constant(_: str) -> Any:
    raise InputRejectedError(422, "number_out_of_range", "NaN and Infinity are not JSON")


def _walk(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _bad_text(item):
                raise InputRejectedError(
                    422, "invalid_character", "strings may not hold NUL or lone surrogates"
                )
        elif isinstance(item, list):
            if len(item) > MAX_ARRAY_ITEMS:
                raise InputRejectedError(
                    413, "too_many_items", f"arrays hold at most {MAX_ARRAY_ITEMS} items"
                )
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())


def check_json(body: bytes) -> None:
    """Raise ``InputRejectedError`` unless ``body`` is JSON every route can take."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InputRejectedError(400, "invalid_encoding", "JSON bodies must be UTF-8") from None
    if not _depth_ok(body):
        raise InputRejectedError(400, "too_deep", f"JSON may nest at most {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(text, parse_int=_integer, parse_float=_number, parse_constant=_constant)
    except InputRejectedError:
        raise
    except (ValueError, RecursionError):
        # Not JSON: the route's own validation answers it (422 json_invalid).
        return
    _walk(value)


def check_form(body: bytes) -> None:
    err = check_query(body, max_params=10_000)
    if err is not None:
        raise err


def _content_type(scope: Scope) -> bytes:
    for key, value in scope["headers"]:
        if key == b"content-type":
            return bytes(value.split(b";", 1)[0].strip().lower())
    return b""


def _content_length(scope: Scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def is_json(content_type: bytes) -> bool:
    kind = content_type.split(b";", 1)[0].strip().lower()
    return kind == b"application/json" or (
        kind.startswith(b"application/") and kind.endswith(b"+json")
    )


class _Body:
    """The ``receive`` a route reads its body through: bounded, and checked when it is JSON."""

    def __init__(self, scope: Scope, receive: Receive, default_limit: int | None) -> None:
        self.scope = scope
        self.receive = receive
        self.default_limit = default_limit
        self.limit: int | object | None = _UNSET
        self.seen = 0
        self.buffered: list[Message] = []

    def _route_limit(self) -> int | None:
        endpoint = self.scope.get("endpoint")
        own = getattr(endpoint, _LIMIT_ATTR, _UNSET)
        return self.default_limit if own is _UNSET else own  # type: ignore[return-value]

    def _too_large(self, limit: int) -> InputRejectedError:
        return InputRejectedError(
            413, "payload_too_large", f"the request body exceeds {limit} bytes"
        )

    async def __call__(self) -> Message:
        if self.buffered:
            return self.buffered.pop(0)
        if self.limit is _UNSET:
            self.limit = self._route_limit()
            declared = _content_length(self.scope)
            if isinstance(self.limit, int) and declared is not None and declared > self.limit:
                raise self._too_large(self.limit)
            kind = _content_type(self.scope)
            if self.limit is None:
                return await self.receive()  # the route reads a stream under its own limit
            if is_json(kind) or kind == b"application/x-www-form-urlencoded":
                return await self._whole(json_body=is_json(kind))
        return await self._counted()

    async def _counted(self) -> Message:
        message = await self.receive()
        if message["type"] == "http.request" and isinstance(self.limit, int):
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit:
                raise self._too_large(self.limit)
        return message

    async def _whole(self, *, json_body: bool) -> Message:
        chunks: list[bytes] = []
        while True:
            message = await self._counted()
            if message["type"] != "http.request":
                return message
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body:
            if json_body:
                check_json(body)
            else:
                check_form(body)
        return {"type": "http.request", "body": body, "more_body": False}


class InputGuard:
    """Refuses malformed targets at once and hands routes a bounded, checked body."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        body_limit: int | None = DEFAULT_BODY_LIMIT,
        max_query_params: int = MAX_QUERY_PARAMS,
        inspect_bodies: bool = True,
    ) -> None:
        self.app = app
        self.inspect_bodies = inspect_bodies
        self.body_limit = body_limit
        self.max_query_params = max_query_params
        self._lists: frozenset[str] | object | None = _UNSET  # the app's, at the first request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._lists is _UNSET and "app" in scope:
            self._lists = list_parameters(scope["app"])
        lists = self._lists if isinstance(self._lists, frozenset) else None
        problem = check_path(scope["path"]) or check_query(
            scope.get("query_string", b""), self.max_query_params, lists
        )
        if problem is not None:
            from plexica_sdk.errors import error_response

            await error_response(problem.status_code, problem.code, problem.detail)(
                scope, receive, send
            )
            return
        if self.inspect_bodies:
            receive = _Body(scope, receive, self.body_limit)
        await self.app(scope, receive, send)


__all__ = [
    "DEFAULT_BODY_LIMIT",
    "InputGuard",
    "InputRejectedError",
    "MiB",
    "body_limit",
    "check_json",
]
