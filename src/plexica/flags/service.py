"""Flag definitions, their changes and in-process evaluation.

Changes are written with a row lock and a history row in the caller's transaction; the caller
announces them (``announce``) after the commit so that no replica reloads uncommitted state.
"""

from __future__ import annotations

from typing import Any, TypeVar

from openfeature.flag_evaluation import Reason
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.audit import service as audit
from plexica.flags import repository
from plexica.flags.cache import ChangeBus, FlagCache, parse
from plexica.flags.errors import FlagExistsError, FlagNotFoundError, InvalidFlagError
from plexica.flags.schemas import FlagChange, FlagIn, FlagPatch
from plexica_sdk.flags import FlagContext, FlagDefinition, count_default, evaluate

T = TypeVar("T")
_STORED = {"version"}


def _stored(flag: FlagDefinition) -> dict[str, Any]:
    return flag.model_dump(mode="json", exclude=_STORED)


def _validated(data: dict[str, Any], version: int) -> FlagDefinition:
    try:
        return FlagDefinition.model_validate({**data, "version": version})
    except ValidationError as exc:
        details = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        raise InvalidFlagError("the flag definition is not valid", details=details) from None


class FlagService:
    def __init__(self, cache: FlagCache, bus: ChangeBus) -> None:
        self.cache = cache
        self.bus = bus

    # -- the request path: no I/O, never raises ------------------------------------------------

    def evaluate(self, key: str, ctx: FlagContext, default: T) -> tuple[T, str | None, str]:
        """(value, variant, reason); the caller's default for an unknown flag or wrong type."""
        flag = self.cache.get(key)
        if flag is None:
            count_default(key, "flag_not_found")
            return default, None, Reason.ERROR
        variant, reason = evaluate(flag, ctx)
        value = flag.variants[variant]
        if default is not None and type(value) is not type(default):
            count_default(key, "type_mismatch")
            return default, None, Reason.ERROR
        return value, variant, reason  # type: ignore[return-value]

    def is_enabled(self, key: str, ctx: FlagContext, default: bool = False) -> bool:
        return self.evaluate(key, ctx, default)[0]

    # -- operators -------------------------------------------------------------------------------

    async def all(self, session: AsyncSession) -> list[FlagDefinition]:
        rows = await repository.all_flags(session)
        flags = [f for d, v in rows if (f := parse(d, v)) is not None]
        return sorted(flags, key=lambda f: f.key)

    async def get(self, session: AsyncSession, key: str, *, lock: bool = False) -> FlagDefinition:
        row = await repository.get(session, key, lock=lock)
        flag = None if row is None else parse(*row)
        if flag is None:
            raise FlagNotFoundError(f"no flag {key}")
        return flag

    async def create(self, session: AsyncSession, actor: str, data: FlagIn) -> FlagDefinition:
        fields = data.model_dump(exclude_none=True)
        if data.kind == "variant" and data.variants is None:
            raise InvalidFlagError("a variant flag needs its variants")
        flag = _validated(fields, 1)
        if not await repository.insert(session, flag.key, _stored(flag)):
            raise FlagExistsError(f"flag {flag.key} already exists")
        await _record(session, flag.key, "create", actor=actor, before=None, after=flag)
        return flag

    async def update(
        self, session: AsyncSession, actor: str, key: str, patch: FlagPatch
    ) -> FlagDefinition:
        before = await self.get(session, key, lock=True)
        changes = {name: getattr(patch, name) for name in patch.model_fields_set}
        merged = {**_stored(before), **{k: _dump(v) for k, v in changes.items()}}
        after = _validated(merged, before.version + 1)
        await repository.update(session, key, _stored(after), after.version)
        await _record(session, key, "update", actor=actor, before=before, after=after)
        return after

    async def toggle(
        self, session: AsyncSession, actor: str, key: str, enabled: bool | None = None
    ) -> FlagDefinition:
        before = await self.get(session, key, lock=True)
        state = (not before.enabled) if enabled is None else enabled
        after = before.model_copy(update={"enabled": state, "version": before.version + 1})
        await repository.update(session, key, _stored(after), after.version)
        action = "enable" if state else "disable"
        await _record(session, key, action, actor=actor, before=before, after=after)
        return after

    async def changes(self, session: AsyncSession, key: str, limit: int = 100) -> list[FlagChange]:
        rows = await repository.changes(session, key, limit)
        return [
            FlagChange(id=i, action=a, actor=who, before=b, after=af, at=at)
            for i, a, who, b, af, at in rows
        ]

    async def announce(self, flag: FlagDefinition) -> None:
        """After the commit: apply here at once, then tell every replica."""
        self.cache.put(flag)
        await self.bus.publish(flag.key)


def _dump(value: object) -> object:
    dump = getattr(value, "model_dump", None)
    return dump(mode="json") if callable(dump) else value


async def _record(
    session: AsyncSession,
    key: str,
    action: str,
    *,
    actor: str,
    before: FlagDefinition | None,
    after: FlagDefinition,
) -> None:
    # The flag's own history, kept with the flag, and the platform audit log.
    before_json = None if before is None else before.model_dump(mode="json")
    after_json = after.model_dump(mode="json")
    await repository.record_change(
        session, key, action, actor=actor, before=before_json, after=after_json
    )
    await audit.record(session, actor, f"flag.{action}", None, key, before_json, after_json)


async def declare(
    session: AsyncSession, actor: str, key: str, description: str, default: bool
) -> bool:
    """A flag a plugin declares in its manifest: created once (an operator's later changes are
    kept), serving ``default`` until targeted; every replica loads it within its refresh."""
    data = FlagIn(key=key, description=description, default_variant="on" if default else "off")
    flag = _validated(data.model_dump(exclude_none=True), 1)
    if not await repository.insert(session, flag.key, _stored(flag)):
        return False
    await _record(session, flag.key, "create", actor=actor, before=None, after=flag)
    return True
