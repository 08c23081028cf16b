"""Flag evaluation and the OpenFeature provider: pure code, no server."""

from __future__ import annotations

import uuid

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason
from prometheus_client import REGISTRY
from pydantic import ValidationError

from plexica_sdk.context import Principal
from plexica_sdk.flags import (
    FlagContext,
    FlagDefinition,
    PlexicaFlagProvider,
    Rollout,
    TenantFlags,
    evaluate,
    rollout_bucket,
)

A = str(uuid.uuid4())


def test_targeting_order() -> None:
    flag = FlagDefinition(
        key="checkout.v2",
        default_variant="off",
        tenants={A: "on", "beta-co": "on"},
        plans={"enterprise": "on"},
        rings={"canary": "on"},
    )
    assert evaluate(flag, FlagContext()) == ("off", Reason.DEFAULT)
    assert evaluate(flag, FlagContext(tenant_id=A)) == ("on", Reason.TARGETING_MATCH)
    assert evaluate(flag, FlagContext(tenant_slug="beta-co"))[0] == "on"
    assert evaluate(flag, FlagContext(plan="enterprise"))[0] == "on"
    assert evaluate(flag, FlagContext(plan="free", ring="canary"))[0] == "on"
    assert evaluate(flag, FlagContext(plan="free", ring="stable"))[0] == "off"
    off = flag.model_copy(update={"enabled": False})
    assert evaluate(off, FlagContext(tenant_id=A)) == ("off", Reason.DISABLED)


def test_percentage_rollout_is_stable_and_proportional() -> None:
    flag = FlagDefinition(key="search.new", rollout=Rollout(variant="on", percentage=25))
    tenants = [str(uuid.UUID(int=i)) for i in range(10_000)]
    served = [evaluate(flag, FlagContext(tenant_id=t))[0] for t in tenants]
    share = served.count("on") / len(served)
    assert 0.23 < share < 0.27
    assert served == [evaluate(flag, FlagContext(tenant_id=t))[0] for t in tenants]
    # Raising the percentage only adds tenants: nobody who had it loses it.
    wider = flag.model_copy(update={"rollout": Rollout(variant="on", percentage=50)})
    for t, before in zip(tenants, served, strict=True):
        if before == "on":
            assert evaluate(wider, FlagContext(tenant_id=t))[0] == "on"
    # Another flag buckets the same tenants independently.
    assert rollout_bucket("a", tenants[0]) != rollout_bucket("b", tenants[0]) or rollout_bucket(
        "a", tenants[1]
    ) != rollout_bucket("b", tenants[1])


def test_definitions_are_validated() -> None:
    with pytest.raises(ValidationError):
        FlagDefinition(key="x", default_variant="missing")
    with pytest.raises(ValidationError):
        FlagDefinition(key="x", kind="boolean", variants={"on": "yes", "off": "no"})
    with pytest.raises(ValidationError):
        FlagDefinition(key="Bad Key")
    with pytest.raises(ValidationError):
        FlagDefinition(key="x", rollout=Rollout(variant="nope", percentage=10))


def _errors(reason: str) -> float:
    return (
        REGISTRY.get_sample_value("plexica_flag_evaluation_errors_total", {"reason": reason}) or 0.0
    )


def test_openfeature_provider_never_raises() -> None:
    flags = {
        "theme": FlagDefinition(
            key="theme",
            kind="variant",
            variants={"classic": "classic", "dark": "dark"},
            default_variant="classic",
            tenants={A: "dark"},
        ),
        "beta": FlagDefinition(key="beta", default_variant="on"),
    }
    api.set_provider(PlexicaFlagProvider(flags.get), domain="unit")
    client = api.get_client("unit")
    ctx = EvaluationContext(targeting_key=A)
    assert client.get_string_value("theme", "x", ctx) == "dark"
    assert client.get_string_value("theme", "x") == "classic"
    assert client.get_boolean_value("beta", False) is True

    before = _errors("flag_not_found")
    details = client.get_boolean_details("no.such.flag", True, ctx)
    assert details.value is True
    assert details.error_code == ErrorCode.FLAG_NOT_FOUND
    assert _errors("flag_not_found") == before + 1

    mismatch = _errors("type_mismatch")
    assert client.get_boolean_value("theme", False, ctx) is False
    assert client.get_integer_value("beta", 7) == 7
    assert _errors("type_mismatch") == mismatch + 2


def test_tenant_flags_use_the_request_tenant() -> None:
    flags = {"beta": FlagDefinition(key="beta", tenants={A: "on"})}
    api.set_provider(PlexicaFlagProvider(flags.get), domain="tenant-helper")
    them = Principal(subject="u", issuer="i", tenant_id=uuid.UUID(A), tenant_slug="acme")
    other = Principal(subject="u", issuer="i", tenant_id=uuid.uuid4(), tenant_slug="other")
    assert TenantFlags(them, domain="tenant-helper").is_enabled("beta") is True
    assert TenantFlags(other, domain="tenant-helper").is_enabled("beta") is False
    assert TenantFlags(them, domain="tenant-helper").is_enabled("unknown", default=True) is True
    assert TenantFlags(them, plan="pro").context.attributes["plan"] == "pro"
