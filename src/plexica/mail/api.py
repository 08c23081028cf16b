"""``/v1/dev-mail``: the operator reads the dev mailbox (ADR 0225)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from plexica.kit.db import request_db
from plexica.kit.security import OperatorDep
from plexica.mail import service

router = APIRouter(prefix="/v1/dev-mail", tags=["platform"])


class DevMail(BaseModel):
    id: UUID
    to: str
    subject: str
    body: str
    created_at: datetime


@router.get("", summary="Mail kept by a platform without PLEXICA_SMTP_URL, newest first")
async def list_dev_mail(
    request: Request,
    _: OperatorDep,
    to: Annotated[str | None, Query(max_length=320)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[DevMail]:
    db = request_db(request)
    found = await service.latest(db, limit, to.strip().lower() if to else None)
    return [
        DevMail(id=m.id, to=m.recipient, subject=m.subject, body=m.body, created_at=m.created_at)
        for m in found
    ]
