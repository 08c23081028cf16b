"""Feature flags: the definition model, in-process evaluation and an OpenFeature provider.

The core keeps every flag in a local snapshot (refreshed when an operator changes one) and
evaluates from it; plugins use the same model and provider. Evaluation never raises in the
request path: an unknown flag or a value of the wrong type gives the caller's default, counted in
``plexica_flag_evaluation_errors_total`` and logged once per flag.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import httpx
import structlog
from openfeature import api as openfeature_api
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason
from openfeature.provider import AbstractProvider, Metadata
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, model_validator

from plexica_sdk.context import Principal

FLAG_KEY = re.compile(r"^[a-z][a-z0-9_.:-]{0,127}$")
BUCKETS = 10_000

Value = bool | str | int | float

EVALUATION_ERRORS = Counter(
    "plexica_flag_evaluation_errors_total",
    "Flag evaluations answered with the caller's default (unknown flag, wrong type).",
    ["reason"],
)
_log = structlog.get_logger("plexica.flags")
_warned: set[tuple[str, str]] = set()


_BOOLEAN_VARIANTS: dict[str, Value] = {"on": True, "off": False}


class Rollout(BaseModel):
    """Serve ``variant`` to ``percentage`` % of tenants, chosen by a stable hash."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    variant: str
    percentage: float = Field(ge=0, le=100)


class FlagDefinition(BaseModel):
    """One flag. Evaluation order: kill switch, tenant, plan, ring, rollout, default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(pattern=FLAG_KEY.pattern)
    kind: Literal["boolean", "variant"] = "boolean"
    description: str = Field(default="", max_length=500)
    variants: dict[str, Value] = Field(default_factory=lambda: dict(_BOOLEAN_VARIANTS))
    default_variant: str = "off"
    off_variant: str = "off"
    enabled: bool = True
    tenants: dict[str, str] = Field(default_factory=dict)
    plans: dict[str, str] = Field(default_factory=dict)
    rings: dict[str, str] = Field(default_factory=dict)
    rollout: Rollout | None = None
    version: int = 0

    @model_validator(mode="before")
    @classmethod
    def _default_off(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("off_variant") is None:
            variants = data.get("variants") or _BOOLEAN_VARIANTS
            fallback = data.get("default_variant", "off")
            data = {**data, "off_variant": "off" if "off" in variants else fallback}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> FlagDefinition:
        if not self.variants:
            raise ValueError("a flag needs at least one variant")
        if self.kind == "boolean" and not all(isinstance(v, bool) for v in self.variants.values()):
            raise ValueError("a boolean flag has boolean variants")
        named = [self.default_variant, self.off_variant]
        named += [*self.tenants.values(), *self.plans.values(), *self.rings.values()]
        if self.rollout is not None:
            named.append(self.rollout.variant)
        unknown = sorted({v for v in named if v not in self.variants})
        if unknown:
            raise ValueError(f"unknown variants: {', '.join(unknown)}")
        return self


class FlagContext(BaseModel):
    """Who a flag is evaluated for: a tenant (id and slug), its plan and its release ring."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str | None = None
    tenant_slug: str | None = None
    plan: str | None = None
    ring: str | None = None

    @classmethod
    def from_openfeature(cls, context: EvaluationContext | None) -> FlagContext:
        if context is None:
            return _EMPTY
        attrs = context.attributes
        return cls(
            tenant_id=context.targeting_key or _str(attrs.get("tenant_id")),
            tenant_slug=_str(attrs.get("tenant_slug")),
            plan=_str(attrs.get("plan")),
            ring=_str(attrs.get("ring")),
        )


_EMPTY = FlagContext()


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


@functools.lru_cache(maxsize=65_536)
def rollout_bucket(flag_key: str, tenant_id: str) -> int:
    """A tenant's stable position in [0, 10000) for one flag: sha256 of the key and tenant."""
    digest = hashlib.sha256(f"{flag_key}:{tenant_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def evaluate(flag: FlagDefinition, ctx: FlagContext) -> tuple[str, Reason]:
    """The variant served and why (an OpenFeature reason)."""
    if not flag.enabled:
        return flag.off_variant, Reason.DISABLED
    if flag.tenants:
        for ident in (ctx.tenant_id, ctx.tenant_slug):
            if ident is not None and ident in flag.tenants:
                return flag.tenants[ident], Reason.TARGETING_MATCH
    if ctx.plan is not None and ctx.plan in flag.plans:
        return flag.plans[ctx.plan], Reason.TARGETING_MATCH
    if ctx.ring is not None and ctx.ring in flag.rings:
        return flag.rings[ctx.ring], Reason.TARGETING_MATCH
    rollout = flag.rollout
    if (
        rollout is not None
        and ctx.tenant_id is not None
        and rollout_bucket(flag.key, ctx.tenant_id) < rollout.percentage * (BUCKETS / 100)
    ):
        return rollout.variant, Reason.SPLIT
    return flag.default_variant, Reason.DEFAULT if rollout is None else Reason.SPLIT


def count_default(flag_key: str, reason: str) -> None:
    EVALUATION_ERRORS.labels(reason=reason).inc()
    if (flag_key, reason) not in _warned and len(_warned) < 10_000:
        _warned.add((flag_key, reason))
        _log.warning("flag evaluated to the default", flag=flag_key, reason=reason)


T = TypeVar("T")
FlagLookup = Callable[[str], FlagDefinition | None]


def _defaulted(key: str, default: T, code: ErrorCode, message: str) -> FlagResolutionDetails[T]:
    """The caller's default, counted and logged by ``code`` in lower case (``flag_not_found``)."""
    count_default(key, code.value.lower())
    return FlagResolutionDetails(
        value=default, reason=Reason.ERROR, error_code=code, error_message=message
    )


class PlexicaFlagProvider(AbstractProvider):
    """OpenFeature provider over a lookup into an in-process snapshot of flag definitions."""

    def __init__(self, lookup: FlagLookup) -> None:
        self._lookup = lookup

    def get_metadata(self) -> Metadata:
        return Metadata(name="plexica")

    def get_provider_hooks(self) -> list[Any]:
        return []

    def _resolve(
        self, key: str, default: T, context: EvaluationContext | None, types: tuple[type, ...]
    ) -> FlagResolutionDetails[T]:
        flag = self._lookup(key)
        if flag is None:
            return _defaulted(key, default, ErrorCode.FLAG_NOT_FOUND, f"unknown flag {key}")
        variant, reason = evaluate(flag, FlagContext.from_openfeature(context))
        value = flag.variants[variant]
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            return _defaulted(
                key, default, ErrorCode.TYPE_MISMATCH, f"flag {key} is not of the requested type"
            )
        return FlagResolutionDetails(
            value=value,  # type: ignore[arg-type]
            reason=reason,
            variant=variant,
            flag_metadata={"version": flag.version},
        )

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, default_value, evaluation_context, (bool,))

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, default_value, evaluation_context, (str,))

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return self._resolve(flag_key, default_value, evaluation_context, (int,))

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        return self._resolve(flag_key, default_value, evaluation_context, (float, int))

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        count_default(flag_key, "type_mismatch")
        return FlagResolutionDetails(
            value=default_value, reason=Reason.ERROR, error_code=ErrorCode.TYPE_MISMATCH
        )


def tenant_context(principal: Principal, **attributes: str) -> EvaluationContext:
    """The OpenFeature context of a request: its tenant (targeting key) plus plan/ring if known."""
    attrs: dict[str, Any] = dict(attributes)
    if principal.tenant_slug:
        attrs["tenant_slug"] = principal.tenant_slug
    tenant_id = str(principal.tenant_id) if principal.tenant_id else None
    if tenant_id:
        attrs["tenant_id"] = tenant_id
    return EvaluationContext(targeting_key=tenant_id, attributes=attrs)


class TenantFlags:
    """Flags for one request's tenant through the standard OpenFeature client."""

    def __init__(self, principal: Principal, domain: str | None = None, **attributes: str) -> None:
        self._client = openfeature_api.get_client(domain)
        self._context = tenant_context(principal, **attributes)

    @property
    def context(self) -> EvaluationContext:
        return self._context

    def is_enabled(self, key: str, default: bool = False) -> bool:
        return self._client.get_boolean_value(key, default, self._context)

    def variant(self, key: str, default: str) -> str:
        return self._client.get_string_value(key, default, self._context)

    def number(self, key: str, default: float) -> float:
        return self._client.get_float_value(key, default, self._context)


TokenSource = str | Callable[[], Awaitable[str]]


class FlagFeed:
    """A plugin's copy of the core's flags, polled from ``/v1/flags/snapshot`` (ETag: a poll
    with nothing new is a 304) so that evaluation stays in process. Needs a platform service
    token. On errors the last snapshot keeps serving."""

    def __init__(
        self, client: httpx.AsyncClient, token: TokenSource, *, interval: float = 1.0
    ) -> None:
        self._client = client
        self._token = token
        self.interval = interval
        self._flags: dict[str, FlagDefinition] = {}
        self._etag: str | None = None
        self._task: asyncio.Task[None] | None = None

    def lookup(self, key: str) -> FlagDefinition | None:
        return self._flags.get(key)

    def provider(self) -> PlexicaFlagProvider:
        return PlexicaFlagProvider(self.lookup)

    async def refresh(self) -> bool:
        """Poll once; True when the snapshot changed."""
        token = self._token if isinstance(self._token, str) else await self._token()
        headers = {"Authorization": f"Bearer {token}"}
        if self._etag:
            headers["If-None-Match"] = self._etag
        response = await self._client.get("/v1/flags/snapshot", headers=headers)
        if response.status_code == 304:
            return False
        response.raise_for_status()
        flags = [FlagDefinition.model_validate(f) for f in response.json()["flags"]]
        self._flags = {f.key: f for f in flags}
        self._etag = response.headers.get("etag")
        return True

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._poll(), name="plexica-flag-feed")

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.refresh()
            except (httpx.HTTPError, ValueError) as exc:
                _log.warning("flag snapshot poll failed", error=str(exc))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
