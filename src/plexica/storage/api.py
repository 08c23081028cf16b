"""``/v1/files``: a tenant's objects. The bucket comes from the verified token, never a header."""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterable
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse
from starlette.convertors import PathConvertor, register_url_convertor

from plexica.kit.db import Database, DbDep
from plexica.kit.security import OperatorDep, PrincipalDep
from plexica.kit.state import core_state
from plexica.storage.errors import InvalidKeyError, StorageUnavailableError
from plexica.storage.local import LocalStore
from plexica.storage.schemas import (
    FileOut,
    FilePage,
    LimitsIn,
    PresignIn,
    PresignOut,
    UsageOut,
)
from plexica.storage.service import REFUSED, SLUG_PATTERN, Received, Scope, StorageService
from plexica.storage.signing import EDGE_CORE_PREFIX, SIGNED_PATH
from plexica.storage.store import ObjectInfo
from plexica_sdk.errors import ForbiddenError, NotFoundError, PlexicaError
from plexica_sdk.guard import body_limit


class _KeyConvertor(PathConvertor):
    """Like ``path`` but also matches control characters, so that they get a 400, not a 404."""

    regex = r"[\s\S]+"


register_url_convertor("objectkey", _KeyConvertor())

# Uploads are the bytes of the file, of the type the Content-Type names (sniffed and checked).
BINARY_BODY = {
    "required": True,
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}
# A download is the file's bytes with the type it was stored with.
FILE_RESPONSE = {
    "description": "The file",
    "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
}
router = APIRouter(prefix="/v1/files", tags=["files"])


def get_storage(request: Request) -> StorageService:
    service = core_state(request).storage
    if service is None:
        raise StorageUnavailableError("storage is not configured on this service")
    return service


StorageDep = Annotated[StorageService, Depends(get_storage)]


def scope_of(principal: PrincipalDep) -> Scope:
    return Scope.of_tenant(principal.tenant_id, principal.tenant_slug)


ScopeDep = Annotated[Scope, Depends(scope_of)]
# The tenant's logo lives under branding/ (shown to all its users): written by its admins only.
RESERVED_PREFIX = "branding/"
SETTINGS_WRITE = "tenant:settings:write"


def _guard_reserved(principal: PrincipalDep, key: str) -> None:
    if key.lstrip("/").startswith(RESERVED_PREFIX) and not principal.has_permission(SETTINGS_WRITE):
        raise ForbiddenError(f"files under {RESERVED_PREFIX} need the {SETTINGS_WRITE} permission")


def _out(info: ObjectInfo) -> FileOut:
    return FileOut(
        key=info.key,
        size=info.size,
        content_type=info.content_type or None,
        etag=info.etag,
        modified=info.modified,
    )


def _encode_cursor(key: str | None) -> str | None:
    return None if key is None else base64.urlsafe_b64encode(key.encode()).decode()


def _decode_cursor(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        return base64.urlsafe_b64decode(cursor.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidKeyError("the cursor is not valid", code="invalid_cursor") from None


async def _store_upload(
    request: Request,
    service: StorageService,
    db: Database,
    scope: Scope,
    key: str,
    *,
    exact_size: int | None = None,
    exact_type: str | None = None,
) -> ObjectInfo:
    try:
        return await _receive_and_commit(
            request, service, db, scope, key, exact_size=exact_size, exact_type=exact_type
        )
    except PlexicaError as exc:
        if exc.status < 500:
            REFUSED.labels(code=exc.code).inc()
        raise


async def _receive_and_commit(
    request: Request,
    service: StorageService,
    db: Database,
    scope: Scope,
    key: str,
    *,
    exact_size: int | None,
    exact_type: str | None,
) -> ObjectInfo:
    declared_length = request.headers.get("content-length")
    async with db.session() as session:
        plan = await service.plan_upload(
            session,
            scope,
            key,
            declared_size=int(declared_length)
            if declared_length and declared_length.isdigit()
            else None,
        )
    plan.exact_size, plan.exact_type = exact_size, exact_type
    received: Received = await service.receive(
        scope, plan, request.headers.get("content-type"), request.stream()
    )
    async with db.session() as session:
        return await service.commit(session, scope, received)


@router.get("", summary="List the tenant's files", response_model=FilePage)
async def list_files(
    service: StorageDep,
    scope: ScopeDep,
    prefix: Annotated[str, Query(max_length=1024)] = "",
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> FilePage:
    page = await service.list(scope, prefix, _decode_cursor(cursor), limit)
    return FilePage(
        items=[_out(i) for i in page.items], next_cursor=_encode_cursor(page.next_after)
    )


@router.get("/usage", summary="Bytes stored and the tenant's limits", response_model=UsageOut)
async def usage(service: StorageDep, db: DbDep, scope: ScopeDep) -> UsageOut:
    async with db.session() as session:
        u = await service.usage(session, scope)
    return UsageOut(**u.__dict__)


@router.put(
    "/limits/{tenant_slug}", summary="Set a tenant's quota (operators)", response_model=UsageOut
)
async def set_limits(
    tenant_slug: Annotated[str, PathParam(pattern=SLUG_PATTERN)],
    body: LimitsIn,
    service: StorageDep,
    db: DbDep,
    _: OperatorDep,
) -> UsageOut:
    scope = Scope.of_tenant(None, tenant_slug)
    async with db.session() as session:
        u = await service.set_limits(session, scope, body.quota_bytes, body.max_object_bytes)
    return UsageOut(**u.__dict__)


@router.post("/presign", summary="A short-lived URL to download or upload one file")
async def presign(  # noqa: PLR0917 - FastAPI dependencies
    body: PresignIn,
    request: Request,
    service: StorageDep,
    db: DbDep,
    scope: ScopeDep,
    principal: PrincipalDep,
) -> PresignOut:
    if body.method != "GET":
        _guard_reserved(principal, body.key)
    async with db.session() as session:
        signed = await service.presign(
            session,
            scope,
            body.key,
            body.method,
            expires_in=body.expires_in,
            content_type=body.content_type,
            size=body.size,
        )
    url = signed.url
    if url.startswith("/"):
        # Served by this core behind the edge: absolute under the public URL, where a browser
        # or another service uses it without a bearer (the signature is the capability).
        settings = core_state(request).settings
        url = settings.public_base_url + EDGE_CORE_PREFIX + url
    return PresignOut(
        url=url, method=signed.method, headers=signed.headers, expires_at=signed.expires_at
    )


def _local_signer(service: StorageService) -> LocalStore:
    if not isinstance(service.store, LocalStore) or service.store.signer is None:
        raise NotFoundError("signed URLs are served by the object store in this deployment")
    return service.store


@router.get(
    SIGNED_PATH.removeprefix("/v1/files"),
    summary="Download through a signed URL",
    response_class=Response,
    responses={200: FILE_RESPONSE},
)
async def signed_get(
    token: Annotated[str, Query(max_length=4096)], service: StorageDep
) -> Response:
    store = _local_signer(service)
    assert store.signer is not None
    claims = store.signer.verify(token, "GET")
    info, chunks = await store.get(str(claims["b"]), str(claims["k"]))
    return _download(info, chunks)


@router.put(
    SIGNED_PATH.removeprefix("/v1/files"),
    summary="Upload through a signed URL",
    openapi_extra={"requestBody": BINARY_BODY},
)
@body_limit(None)  # streamed under the tenant's object size limit
async def signed_put(
    token: Annotated[str, Query(max_length=4096)],
    request: Request,
    service: StorageDep,
    db: DbDep,
) -> FileOut:
    store = _local_signer(service)
    assert store.signer is not None
    claims = store.signer.verify(token, "PUT")
    scope = Scope(str(claims["b"]), None)
    info = await _store_upload(
        request,
        service,
        db,
        scope,
        str(claims["k"]),
        exact_size=int(claims["len"]),
        exact_type=str(claims["ct"]),
    )
    return _out(info)


@router.put(
    "/objects/{key:objectkey}",
    summary="Upload a file (streamed)",
    status_code=201,
    openapi_extra={"requestBody": BINARY_BODY},
)
@body_limit(None)  # streamed under the tenant's object size limit
async def upload(  # noqa: PLR0917 - FastAPI dependencies
    key: str,
    request: Request,
    service: StorageDep,
    db: DbDep,
    scope: ScopeDep,
    principal: PrincipalDep,
) -> FileOut:
    _guard_reserved(principal, key)
    return _out(await _store_upload(request, service, db, scope, key))


@router.get(
    "/objects/{key:objectkey}",
    summary="Download a file (streamed)",
    response_class=Response,
    responses={200: FILE_RESPONSE},
)
async def download(key: str, service: StorageDep, scope: ScopeDep) -> Response:
    info, chunks = await service.open(scope, key)
    return _download(info, chunks)


@router.delete("/objects/{key:objectkey}", summary="Delete a file", status_code=204)
async def delete(
    key: str, service: StorageDep, db: DbDep, scope: ScopeDep, principal: PrincipalDep
) -> Response:
    _guard_reserved(principal, key)
    async with db.session() as session:
        await service.delete(session, scope, key)
    return Response(status_code=204)


def _download(info: ObjectInfo, chunks: AsyncIterable[bytes]) -> Response:
    name = info.key.rsplit("/", 1)[-1]
    headers = {
        "Content-Length": str(info.size),
        "ETag": f'"{info.etag}"',
        # Never rendered by the browser in the core's origin, whatever the bytes are.
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
        "Cache-Control": "private, no-store",
    }
    return StreamingResponse(chunks, media_type=info.content_type, headers=headers)
