"""A tenant's flag targeting as a backup keeps it, and given to a restored tenant.

Flags are the platform's, not the tenant's: a backup keeps the variant each flag serves the
tenant by name (its id or slug in ``tenants``) and the flag's definition without the other
tenants' targeting, so that a deployment without the flag gets it. Every replica picks the change
up within its flag refresh.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.flags import repository
from plexica.flags.cache import parse
from plexica.flags.service import _record, _stored, _validated

ACTOR = "platform:restore"


class SavedFlag(BaseModel):
    key: str
    variant: str
    definition: dict[str, Any]


async def tenant_targets(session: AsyncSession, tenant_id: UUID, slug: str) -> list[SavedFlag]:
    saved = []
    for definition, version in await repository.all_flags(session):
        flag = parse(definition, version)
        if flag is None:
            continue
        variant = flag.tenants.get(str(tenant_id)) or flag.tenants.get(slug)
        if variant is not None:
            alone = {**_stored(flag), "tenants": {}}
            saved.append(SavedFlag(key=flag.key, variant=variant, definition=alone))
    return saved


async def target(session: AsyncSession, tenant_id: UUID, saved: list[SavedFlag]) -> None:
    """Each saved flag serves its variant to the tenant (by id); idempotent."""
    for item in saved:
        found = await repository.get(session, item.key, lock=True)
        before = None if found is None else parse(*found)
        if before is None:
            after = _validated({**item.definition, "tenants": {str(tenant_id): item.variant}}, 1)
            if not await repository.insert(session, after.key, _stored(after)):
                continue
            await _record(session, after.key, "create", actor=ACTOR, before=None, after=after)
            continue
        if before.tenants.get(str(tenant_id)) == item.variant:
            continue
        tenants = {**before.tenants, str(tenant_id): item.variant}
        after = _validated({**_stored(before), "tenants": tenants}, before.version + 1)
        await repository.update(session, after.key, _stored(after), after.version)
        await _record(session, after.key, "update", actor=ACTOR, before=before, after=after)


async def untarget(session: AsyncSession, tenant_id: UUID, keys: list[str]) -> None:
    """The restore is undone: the flags no longer name the tenant."""
    for key in keys:
        found = await repository.get(session, key, lock=True)
        before = None if found is None else parse(*found)
        if before is None or str(tenant_id) not in before.tenants:
            continue
        tenants = {k: v for k, v in before.tenants.items() if k != str(tenant_id)}
        after = _validated({**_stored(before), "tenants": tenants}, before.version + 1)
        await repository.update(session, key, _stored(after), after.version)
        await _record(session, key, "update", actor=ACTOR, before=before, after=after)
