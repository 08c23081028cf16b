"""Request and response models of the files API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class FileOut(BaseModel):
    key: str
    size: int
    content_type: str | None = None
    etag: str
    modified: datetime


class FilePage(BaseModel):
    items: list[FileOut]
    next_cursor: str | None


class PresignIn(BaseModel):
    key: str = Field(max_length=2048)
    method: Literal["GET", "PUT"] = "GET"
    expires_in: int | None = Field(default=None, ge=1)
    content_type: str | None = Field(default=None, max_length=255)
    size: int | None = Field(default=None, ge=0)


class PresignOut(BaseModel):
    url: str
    method: Literal["GET", "PUT"]
    headers: dict[str, str]
    expires_at: datetime


class UsageOut(BaseModel):
    bytes_used: int
    objects: int
    quota_bytes: int
    max_object_bytes: int


class LimitsIn(BaseModel):
    model_config = ConfigDict(strict=True)  # false is not 0 bytes
    quota_bytes: int | None = Field(default=None, ge=0)
    max_object_bytes: int | None = Field(default=None, ge=0)
