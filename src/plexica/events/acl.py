"""Each plugin's principal at the broker and the ACLs its manifests call for (ADR 0218).

A plugin's principal may read the topics of the event families it consumes, with its own
consumer group, and write the topics of the families it emits and the dead-letter topic (its
consumer copies its dead letters there). Nothing else: no other plugin's topic, no other group,
no topic creation (the platform makes the topics when it grants them).

The platform's principal (core and worker) is an ordinary one (ADR 0253): it relays every family
and consumes for the plugins the core hosts, and can change no credential and no ACL. Only the
broker's administrator, held by the grants job alone, makes principals and ACLs.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._acl import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
)
from confluent_kafka.admin._resource import ResourcePatternType, ResourceType
from confluent_kafka.admin._scram import (
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from confluent_kafka.cimpl import NewTopic

from plexica.events.delivery import DEAD_LETTER_TOPIC, consumer_group
from plexica.events.relay import family_topics
from plexica.kit.kafka import KafkaLogin

log = structlog.get_logger("plexica.events.acl")

SCRAM_ITERATIONS = 8192
# A filter's "any name / any host" (the library's annotations say str).
_ANY: Any = None


def plugin_principal(plugin_id: str) -> str:
    return f"plexica-plugin-{plugin_id}"


def broker_password(database_password: str) -> str:
    """The plugin's broker password, derived from its database login's: one secret to keep and
    rotate (`plexica plugin credentials --rotate`), two distinct passwords on the wire."""
    digest = hmac.new(database_password.encode(), b"plexica kafka scram", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class Resource(StrEnum):
    TOPIC = "topic"
    GROUP = "group"
    CLUSTER = "cluster"


class Operation(StrEnum):
    READ = "read"
    WRITE = "write"
    CREATE = "create"
    IDEMPOTENT_WRITE = "idempotent_write"


class Pattern(StrEnum):
    LITERAL = "literal"
    PREFIXED = "prefixed"


@dataclass(frozen=True, order=True)
class Grant:
    """ALLOW ``operation`` on the resource named ``name`` (exactly, or every name it begins
    when PREFIXED; READ and WRITE imply DESCRIBE at the broker)."""

    resource: Resource
    name: str
    operation: Operation
    pattern: Pattern = Pattern.LITERAL

    def __str__(self) -> str:
        star = "*" if self.pattern is Pattern.PREFIXED else ""
        return f"{self.operation}:{self.resource}:{self.name}{star}"


PLATFORM_PRINCIPAL = "plexica-platform"
# Kafka's names for every topic (a LITERAL "*") and for the cluster.
ALL_TOPICS = "*"
CLUSTER_NAME = "kafka-cluster"


def plugin_grants(
    plugin_id: str, consumes: Iterable[str], emits: Iterable[str]
) -> frozenset[Grant]:
    consumed = family_topics(frozenset(consumes))
    grants = {Grant(Resource.TOPIC, t, Operation.READ) for t in consumed}
    grants |= {Grant(Resource.TOPIC, t, Operation.WRITE) for t in family_topics(frozenset(emits))}
    if consumed:
        grants.add(Grant(Resource.GROUP, consumer_group(plugin_id), Operation.READ))
        grants.add(Grant(Resource.TOPIC, DEAD_LETTER_TOPIC, Operation.WRITE))
    return frozenset(grants)


def platform_grants() -> frozenset[Grant]:
    """Core and worker: write and make every family's topic (the relay), read every topic with
    the plugins' groups (the core consumes for the plugins it hosts in process), and produce
    idempotently. No ALTER anywhere: no credential, no ACL, no cluster setting."""
    topic_operations = (Operation.READ, Operation.WRITE, Operation.CREATE)
    return frozenset(
        {Grant(Resource.TOPIC, ALL_TOPICS, op) for op in topic_operations}
        | {
            Grant(Resource.GROUP, consumer_group(""), Operation.READ, Pattern.PREFIXED),
            Grant(Resource.CLUSTER, CLUSTER_NAME, Operation.IDEMPOTENT_WRITE),
        }
    )


@dataclass(frozen=True)
class PluginAccess:
    login: KafkaLogin
    grants: frozenset[Grant]
    added: int
    removed: int


class BrokerAdmin:
    """The broker's admin API through librdkafka (aiokafka has no ACL or SCRAM calls); its
    futures are awaited without blocking the loop."""

    def __init__(self, bootstrap: str, login: KafkaLogin | None, *, timeout: float = 15.0) -> None:
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            **(login.librdkafka() if login else {}),
        }
        self._client = AdminClient(config)
        self.timeout = timeout

    async def _all(self, futures: Iterable[Any]) -> None:
        await asyncio.wait_for(
            asyncio.gather(*(asyncio.wrap_future(f) for f in futures)), self.timeout
        )

    async def set_password(self, username: str, password: str) -> None:
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
        upsert = UserScramCredentialUpsertion(username, info, password.encode())
        await self._all(self._client.alter_user_scram_credentials([upsert]).values())

    async def create_topics(self, topics: Iterable[str], partitions: int = 6) -> None:
        names = sorted(set(topics))
        if not names:
            return
        # -1: the broker's default replication factor.
        futures = self._client.create_topics(
            [NewTopic(name, partitions, -1) for name in names], request_timeout=self.timeout
        )
        for name, future in futures.items():
            try:
                await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
                log.debug("topic_exists", topic=name)

    async def grants(self, principal: str) -> frozenset[Grant]:
        query = AclBindingFilter(
            ResourceType.ANY, _ANY, ResourcePatternType.ANY, f"User:{principal}", _ANY,
            AclOperation.ANY, AclPermissionType.ANY,
        )  # fmt: skip
        bindings = await asyncio.wait_for(
            asyncio.wrap_future(self._client.describe_acls(query)), self.timeout
        )
        out: set[Grant] = set()
        for b in bindings:
            grant = _grant_of(b)
            if grant is None:
                # Anything not of this module's making is taken away, not kept.
                await self._delete([b])
            else:
                out.add(grant)
        return frozenset(out)

    async def sync(self, principal: str, desired: frozenset[Grant]) -> tuple[int, int]:
        """Make the principal's ACLs exactly ``desired``; (added, removed)."""
        current = await self.grants(principal)
        missing = sorted(desired - current)
        extra = sorted(current - desired)
        if missing:
            bindings = [acl_binding(principal, g) for g in missing]
            await self._all(self._client.create_acls(bindings).values())
        if extra:
            await self._delete([acl_binding(principal, g) for g in extra])
        return len(missing), len(extra)

    async def _delete(self, bindings: list[Any]) -> None:
        filters = [
            AclBindingFilter(
                b.restype,
                b.name,
                b.resource_pattern_type,
                b.principal,
                b.host,
                b.operation,
                b.permission_type,
            )
            for b in bindings
        ]
        await self._all(self._client.delete_acls(filters).values())


_RESOURCES = {
    Resource.TOPIC: ResourceType.TOPIC,
    Resource.GROUP: ResourceType.GROUP,
    Resource.CLUSTER: ResourceType.BROKER,  # the library's name for the cluster resource
}
_OPERATIONS = {
    Operation.READ: AclOperation.READ,
    Operation.WRITE: AclOperation.WRITE,
    Operation.CREATE: AclOperation.CREATE,
    Operation.IDEMPOTENT_WRITE: AclOperation.IDEMPOTENT_WRITE,
}
_PATTERNS = {
    Pattern.LITERAL: ResourcePatternType.LITERAL,
    Pattern.PREFIXED: ResourcePatternType.PREFIXED,
}


def acl_binding(principal: str, grant: Grant) -> Any:
    return AclBinding(
        _RESOURCES[grant.resource], grant.name, _PATTERNS[grant.pattern], f"User:{principal}",
        "*", _OPERATIONS[grant.operation], AclPermissionType.ALLOW,
    )  # fmt: skip


def _key(mapping: dict[Any, Any], value: Any) -> Any:
    return next((k for k, v in mapping.items() if v == value), None)


def _grant_of(binding: Any) -> Grant | None:
    resource = _key(_RESOURCES, binding.restype)
    operation = _key(_OPERATIONS, binding.operation)
    pattern = _key(_PATTERNS, binding.resource_pattern_type)
    if (
        binding.permission_type != AclPermissionType.ALLOW
        or binding.host != "*"
        or None in (resource, operation, pattern)
    ):
        return None
    return Grant(resource, binding.name, operation, pattern)


async def grant_plugin(
    admin: BrokerAdmin,
    plugin_id: str,
    database_password: str,
    consumes: Iterable[str],
    emits: Iterable[str],
) -> PluginAccess:
    """The plugin's principal with its password, its topics made, its ACLs exactly those of
    ``consumes`` and ``emits``; idempotent (a reconciler calls it again and again)."""
    consumes, emits = frozenset(consumes), frozenset(emits)
    login = KafkaLogin(plugin_principal(plugin_id), broker_password(database_password))
    await admin.set_password(login.username, login.password)
    grants = plugin_grants(plugin_id, consumes, emits)
    await admin.create_topics(g.name for g in grants if g.resource is Resource.TOPIC)
    added, removed = await admin.sync(login.username, grants)
    if added or removed:
        log.info("plugin_broker_acls", plugin=plugin_id, added=added, removed=removed)
    return PluginAccess(login, grants, added, removed)


async def grant_platform(admin: BrokerAdmin, login: KafkaLogin) -> tuple[int, int]:
    """The platform's principal with its password and exactly ``platform_grants``."""
    await admin.set_password(login.username, login.password)
    added, removed = await admin.sync(login.username, platform_grants())
    if added or removed:
        log.info("platform_broker_acls", principal=login.username, added=added, removed=removed)
    return added, removed
