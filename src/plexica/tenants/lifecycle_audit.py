"""The tenant lifecycle in the audit log: each step recorded in the transaction that makes it,
with the operator (or ``platform``) as actor (ADR 0239)."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncSession

from plexica.audit import service as audit
from plexica.tenants.schemas import Tenant


async def record(
    session: AsyncSession,
    actor: str,
    action: str,
    tenant: Tenant,
    *,
    before: Mapping[str, object] | None = None,
    after: Mapping[str, object] | None = None,
) -> None:
    """A lifecycle step in the audit log, in the transaction that makes it (issue 23)."""
    shown = dict(after) if after is not None else {"state": tenant.state.value}
    target = f"tenant:{tenant.slug}"
    await audit.record(
        session, actor, action, tenant.id, target, dict(before) if before else None, shown
    )
