"""What a tenant keeps in its own schema: its settings and its branding (name, colour, logo).

The request's session is bound to the tenant schema; these run in the caller's transaction.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from plexica.storage.sniff import SNIFF_BYTES, sniff
from plexica.tenants import repository
from plexica.tenants.schemas import (
    LOGO_MAX_BYTES,
    LOGO_TYPES,
    Branding,
    BrandingLogo,
    Setting,
    Tenant,
)
from plexica_sdk.errors import NotFoundError, PlexicaError

SETTING_KEY_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,99}$", re.ASCII)


class SettingNotFoundError(NotFoundError):
    code = "setting_not_found"


class LogoTooLargeError(PlexicaError):
    status, code = 413, "logo_too_large"


class LogoTypeError(PlexicaError):
    status, code = 415, "unsupported_logo_type"


BRAND_COLOUR = "branding.primary_color"
BRAND_LOGO = "branding.logo"
LOGO_KEY = "branding/logo"


def check_logo(data: bytes) -> str:
    """The logo's content type from its bytes; refuses empty, oversized or non-raster files."""
    if len(data) > LOGO_MAX_BYTES:
        raise LogoTooLargeError(
            f"the logo is larger than {LOGO_MAX_BYTES // 1024} KiB",
            details={"max_bytes": LOGO_MAX_BYTES},
        )
    found = sniff(data[:SNIFF_BYTES])
    if not data or found not in LOGO_TYPES:
        raise LogoTypeError(
            "the logo must be a PNG, JPEG, GIF or WebP image",
            details={"allowed": sorted(LOGO_TYPES)},
        )
    return found


class TenantSettings:
    """The settings and branding half of ``TenantService`` (its base class)."""

    @staticmethod
    def _key(key: str) -> str:
        if not SETTING_KEY_RE.fullmatch(key):
            raise SettingNotFoundError("no such setting")
        return key

    async def get_setting(self, session: AsyncSession, key: str) -> Setting:
        found = await repository.get_setting(session, self._key(key))
        if found is None:
            raise SettingNotFoundError("no such setting")
        return found

    async def list_settings(self, session: AsyncSession) -> list[Setting]:
        return await repository.list_settings(session)

    async def put_setting(self, session: AsyncSession, key: str, value: Any) -> Setting:
        if not SETTING_KEY_RE.fullmatch(key):
            raise PlexicaError(
                "a setting key is lowercase letters, digits, '_', '.', '-'",
                code="invalid_setting_key",
                status=422,
            )
        return await repository.put_setting(session, key, value)

    async def delete_setting(self, session: AsyncSession, key: str) -> None:
        if not await repository.delete_setting(session, self._key(key)):
            raise SettingNotFoundError("no such setting")

    async def rename(self, session: AsyncSession, tenant: Tenant, name: str) -> None:
        """In the caller's transaction; the caller drops the cached tenant after its commit."""
        await repository.set_name(session, tenant.id, name)

    async def branding(self, session: AsyncSession, tenant: Tenant) -> Branding:
        colour = await repository.get_setting(session, BRAND_COLOUR)
        logo = await repository.get_setting(session, BRAND_LOGO)
        return Branding(
            name=tenant.name,
            primary_color=colour.value if colour and isinstance(colour.value, str) else None,
            logo=BrandingLogo.model_validate(logo.value) if logo else None,
        )
