"""Schemathesis against the real services (ADR 0139): the core as an operator and as a tenant
admin, the CRM and Billing as a tenant admin, each served by uvicorn on loopback with a real
PostgreSQL. Every check runs (server errors, status codes and response schemas as documented,
negative data rejected, ...), with at least 50 examples per operation, derandomized so that CI
sees the same cases on every run."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.config._checks import (
    NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES,
    NegativeDataRejectionConfig,
    PositiveDataAcceptanceConfig,
)
from schemathesis.core.failures import FailureGroup
from schemathesis.schemas import BaseSchema

from plexica.app import create_app
from plexica.identity.service import DEFAULT_PERMISSIONS
from plexica.settings import Settings
from plexica_billing.app import create_app as create_billing_app
from plexica_billing.app import plugin_root as billing_root
from plexica_crm.app import create_app as create_crm_app
from plexica_crm.app import plugin_root as crm_root
from plexica_sdk.app import PluginConfig
from plexica_sdk.auth import JwtVerifier
from plexica_sdk.manifest import load_manifest, load_migrations
from tests.conftest import create_migrated_database, worker_id
from tests.gateway.test_traefik import Served
from tests.support.tokens import AUDIENCE, StaticIssuers

# 25 cases an operation, positive and negative, deterministic: every route and status in a few
# minutes on two cores; set PLEXICA_SCHEMATHESIS_EXAMPLES for a deeper run.
EXAMPLES = int(os.environ.get("PLEXICA_SCHEMATHESIS_EXAMPLES", "25"))


async def _default_permissions(_: uuid.UUID | None, roles: frozenset[str]) -> frozenset[str]:
    return frozenset(p for role in roles for p in DEFAULT_PERMISSIONS.get(role, ()))


@dataclass
class Apis:
    core: str
    crm: str
    billing: str
    schemas: dict[str, dict[str, Any]]
    operator: dict[str, str]
    admin: dict[str, str]


@pytest.fixture(scope="module")
def issuers() -> StaticIssuers:
    return StaticIssuers()


def _register(core: str, root: Any, op: dict[str, str]) -> None:
    manifest = load_manifest(root)
    migrations = [{"name": n, "sql": s} for n, s in load_migrations(manifest, root)]
    doc = manifest.model_dump(mode="json", exclude_none=True)
    r = httpx.post(
        f"{core}/v1/plugins", json={"manifest": doc, "migrations": migrations}, headers=op
    )
    assert r.status_code in (201, 409), r.text
    r = httpx.post(
        f"{core}/v1/plugins/{manifest.id}/versions/{manifest.version}/publish", headers=op
    )
    assert r.status_code in (200, 409), r.text


def _openapi(app: FastAPI) -> dict[str, Any]:
    return dict(app.openapi())


@pytest.fixture(scope="module")
async def fuzz_database_url(pg_url: str) -> str:
    """The fuzzer's own database: as an operator it changes what an operator may, such as the
    platform realm's sign-in policy, which other tests on this worker sign in under."""
    return await create_migrated_database(pg_url, f"plexica_fuzz_{worker_id()}")


@pytest.fixture(scope="module")
def apis(settings: Settings, fuzz_database_url: str, issuers: StaticIssuers) -> Iterator[Apis]:
    verifier = JwtVerifier(issuers, AUDIENCE, permissions=_default_permissions)
    config = PluginConfig(database_url=fuzz_database_url, verifier=verifier)
    crm_app, billing_app = create_crm_app(config), create_billing_app(config)
    with Served(crm_app) as crm, Served(billing_app) as billing:
        # New settings, not a copy: a copy would keep the cached URL of the worker's database.
        tuned = Settings(
            database_url=fuzz_database_url,
            data_dir=settings.data_dir,
            plugin_urls=f"crm={crm.url},billing={billing.url}",
            gateway_rate_limits="",
        )
        core_app = create_app(tuned, verifier=verifier)
        with Served(core_app) as core:
            op = issuers.operator_headers()
            _register(core.url, crm_root(), op)
            _register(core.url, billing_root(), op)
            slug = "st-" + uuid.uuid4().hex[:10]
            r = httpx.post(
                f"{core.url}/v1/tenants",
                json={"slug": slug, "name": "Fuzz", "admin_email": "a@fuzz.example"},
                headers=op,
                timeout=60,
            )
            assert r.status_code == 201, r.text
            tenant = r.json()
            issuers.add_tenant(uuid.UUID(tenant["id"]), slug)
            token = issuers.token(f"plexica-{slug}", sub="fuzz-admin", roles=["tenant_admin"])
            admin = {"Authorization": f"Bearer {token}"}
            for plugin in ("crm", "billing"):
                r = httpx.post(
                    f"{core.url}/v1/tenants/{tenant['id']}/plugins",
                    json={"plugin_id": plugin},
                    headers=admin,
                    timeout=60,
                )
                assert r.status_code == 201, r.text
            yield Apis(
                core.url,
                crm.url,
                billing.url,
                {
                    "core": _openapi(core_app),
                    "crm": _openapi(crm_app),
                    "billing": _openapi(billing_app),
                },
                op,
                admin,
            )


def _schema(doc: dict[str, Any], base_url: str) -> BaseSchema:
    schema = schemathesis.openapi.from_dict(doc)
    schema.config.update(base_url=base_url)
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=EXAMPLES,
        deterministic=True,
    )
    # Schema-valid input can still break a rule of the domain (a reference to a record that
    # does not exist, a state that does not allow the change): 409 or 422; a string the schema
    # types allow can be malformed for its use (NUL, control characters in a file key, a cursor
    # the service did not issue): 400; bytes the schema can only call "binary" (a file, a logo)
    # are sniffed and may be 413 or 415 (ADR 0139). An If-Match the schema allows is a tag
    # that need not be the record's current one: 412 (ADR 0226).
    schema.config.checks.positive_data_acceptance = PositiveDataAcceptanceConfig(
        expected_statuses=[
            "2xx",
            "3xx",
            "400",
            "401",
            "403",
            "404",
            "409",
            "412",
            "413",
            "415",
            "422",
            "429",
        ]
    )
    # Invalid data that is also larger than the body limit is refused for its size before
    # anything reads it: 413 is a rejection too.
    schema.config.checks.negative_data_rejection = NegativeDataRejectionConfig(
        expected_statuses=[*NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES, "413"]
    )
    # Probes and metrics are for machines, not part of the API contract.
    return schema.exclude(path_regex=r"^/(health|ready|metrics)$")


@dataclass
class Outcome:
    operations: int = 0
    examples: int = 0
    failures: list[str] = field(default_factory=list)


def _strategy(operation: Any) -> st.SearchStrategy[Any]:
    strategies = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        try:
            strategies.append(operation.as_strategy(generation_mode=mode))
        except Exception:
            continue
    return st.one_of(*strategies)


def fuzz(
    schema: BaseSchema, callers: dict[str, dict[str, str]], shard: int = 0, shards: int = 1
) -> Outcome:
    """Every operation of the shard, ``EXAMPLES`` cases each (positive and negative), all
    checks, each case sent once as each caller (generating a case costs more than sending it);
    the failures of every operation are collected rather than stopping at the first."""
    outcome = Outcome()
    for index, result in enumerate(schema.get_all_operations()):
        if index % shards != shard:
            continue
        operation = result.ok()  # type: ignore[union-attr] # an invalid schema fails here
        outcome.operations += 1
        _run(operation, callers, outcome)
    return outcome


def _run(operation: Any, callers: dict[str, dict[str, str]], outcome: Outcome) -> None:
    seen: set[str] = set()

    @FUZZ
    @given(case=_strategy(operation))
    def run(case: Any) -> None:
        outcome.examples += 1
        for caller, headers in callers.items():
            try:
                # A busy machine is slow, not wrong: no request timeout short enough to fail on it.
                case.call_and_validate(headers=headers, timeout=300)
            except (Exception, FailureGroup) as exc:
                text = caller + str(exc).split("Reproduce with")[0]
                if text not in seen:
                    seen.add(text)
                    outcome.failures.append(f"{operation.label} as {caller}: {exc}"[:3000])

    run()


def _check(outcome: Outcome) -> None:
    print(f"{outcome.operations} operations, {outcome.examples} examples")
    # Up to EXAMPLES per operation: fewer only where the inputs run out (no parameters).
    assert outcome.examples >= outcome.operations
    assert not outcome.failures, "\n\n".join(outcome.failures)


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)


# The core's operations in two halves, so that two workers can share them.
@pytest.mark.parametrize("shard", [0, 1])
def test_core_as_operator_and_as_tenant_admin(apis: Apis, shard: int) -> None:
    callers = {"operator": apis.operator, "tenant admin": apis.admin}
    _check(fuzz(_schema(apis.schemas["core"], apis.core), callers, shard, 2))


def test_crm(apis: Apis) -> None:
    _check(fuzz(_schema(apis.schemas["crm"], apis.crm), {"tenant admin": apis.admin}))


def test_billing(apis: Apis) -> None:
    _check(fuzz(_schema(apis.schemas["billing"], apis.billing), {"tenant admin": apis.admin}))
