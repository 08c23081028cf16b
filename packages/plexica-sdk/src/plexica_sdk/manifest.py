"""The plugin manifest (``plexica-plugin.yaml``): what a plugin is, needs and contributes.

The same model is the platform's catalog record and the JSON Schema published in the docs
(``docs/plugin-manifest.schema.json``). Validation errors name the field path.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from plexica_sdk.errors import PlexicaError
from plexica_sdk.semver import Version, VersionRange

MANIFEST_FILE = "plexica-plugin.yaml"
PLUGIN_ID_RE = r"^[a-z][a-z0-9]{1,23}$"
PERMISSION_RE = r"^[a-z][a-z0-9]*(:[a-z*][a-z0-9_*]*){1,3}$"
EVENT_TYPE_RE = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){2,}$"
PATH_RE = r"^/[A-Za-z0-9/_{}.-]*$"
ROLE_RE = r"^[a-z][a-z0-9_]{0,62}$"


class ManifestError(PlexicaError):
    """The manifest does not validate; ``details`` lists ``{"path", "message"}`` per problem."""

    status, code = 422, "invalid_manifest"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Permission(_Model):
    key: Annotated[str, Field(pattern=PERMISSION_RE, description="e.g. crm:deal:write")]
    description: str = ""
    default_roles: list[Annotated[str, Field(pattern=ROLE_RE)]] = Field(
        default_factory=list, description="Tenant roles granted this permission by default."
    )


class Dependency(_Model):
    id: Annotated[str, Field(pattern=PLUGIN_ID_RE)]
    version: str = Field(default="*", description="Accepted versions, e.g. '>=1.0.0 <2'.")
    optional: bool = False

    @field_validator("version")
    @classmethod
    def _range(cls, value: str) -> str:
        VersionRange.parse(value)
        return value


class Api(_Model):
    base_path: Annotated[str, Field(pattern=PATH_RE)] | None = Field(
        default=None, description="Public path prefix; default /api/plugins/<id>."
    )
    health_path: Annotated[str, Field(pattern=PATH_RE)] = "/health"
    readiness_path: Annotated[str, Field(pattern=PATH_RE)] = "/ready"
    upstream_timeout_seconds: float = Field(
        default=30,
        gt=0,
        le=300,
        description="How long the edge waits for a response to start; then 504 (ADR 0137).",
    )


class UiPage(_Model):
    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*$")]
    title: str = Field(min_length=1, max_length=80)
    path: Annotated[str, Field(pattern=PATH_RE, description="Fragment path on the plugin API.")]
    navigation: bool = True
    permission: Annotated[str, Field(pattern=PERMISSION_RE)] | None = None


class UiSlot(_Model):
    slot: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]*$")] = Field(
        description="e.g. dashboard.widgets"
    )
    path: Annotated[str, Field(pattern=PATH_RE)]
    permission: Annotated[str, Field(pattern=PERMISSION_RE)] | None = None


class Ui(_Model):
    pages: list[UiPage] = Field(default_factory=list)
    slots: list[UiSlot] = Field(default_factory=list)


def _check_schema(value: dict[str, Any]) -> None:
    try:
        Draft202012Validator.check_schema(value)
    except SchemaError as exc:
        raise ValueError(f"not a valid JSON Schema: {exc.message}") from None


class EventRef(_Model):
    type: Annotated[str, Field(pattern=EVENT_TYPE_RE)]
    schema_version: int = Field(default=1, ge=1)
    data_schema: dict[str, Any] | None = Field(
        default=None,
        description="JSON Schema (2020-12) of the event's data; checked when it is published.",
    )

    @field_validator("data_schema")
    @classmethod
    def _data_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            _check_schema(value)
        return value


class Events(_Model):
    emits: list[EventRef] = Field(default_factory=list)
    consumes: list[EventRef] = Field(default_factory=list)


class FeatureFlag(_Model):
    key: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]*$")]
    description: str = ""
    default: bool = False


class Manifest(_Model):
    """A plugin version as published to the catalog."""

    manifest_version: Literal[1] = 1
    id: Annotated[str, Field(pattern=PLUGIN_ID_RE)] = Field(
        description="Slug, URL segment and table prefix."
    )
    name: str = Field(min_length=1, max_length=80)
    version: str = Field(description="Semantic version of this plugin release.")
    description: str = ""
    publisher: str = Field(min_length=1, max_length=120)
    core: str = Field(default="*", description="Core versions this release works with.")
    dependencies: list[Dependency] = Field(default_factory=list)
    permissions: list[Permission] = Field(default_factory=list)
    api: Api = Field(default_factory=Api)
    ui: Ui = Field(default_factory=Ui)
    events: Events = Field(default_factory=Events)
    migrations: str | None = Field(
        default="migrations",
        description="Folder of NNNN_name.sql files beside the manifest; null for none.",
    )
    settings_schema: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object"},
        description="JSON Schema (2020-12) of the per-tenant settings.",
    )
    data_retention_days: int = Field(
        default=30, ge=0, le=3650, description="Days data is kept after uninstall (no purge)."
    )
    feature_flags: list[FeatureFlag] = Field(default_factory=list)

    @field_validator("version")
    @classmethod
    def _semver(cls, value: str) -> str:
        Version.parse(value)
        return value

    @field_validator("core")
    @classmethod
    def _core_range(cls, value: str) -> str:
        VersionRange.parse(value)
        return value

    @field_validator("settings_schema")
    @classmethod
    def _settings_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_schema(value)
        return value

    @model_validator(mode="after")
    def _own_names(self) -> Manifest:
        for i, p in enumerate(self.permissions):
            if not p.key.startswith(self.id + ":"):
                raise ValueError(f"permissions.{i}.key: must start with '{self.id}:'")
        for i, e in enumerate(self.events.emits):
            if not e.type.startswith(self.id + "."):
                raise ValueError(f"events.emits.{i}.type: must start with '{self.id}.'")
        for i, d in enumerate(self.dependencies):
            if d.id == self.id:
                raise ValueError(f"dependencies.{i}.id: a plugin cannot depend on itself")
        return self

    @property
    def semver(self) -> Version:
        return Version.parse(self.version)

    @property
    def table_prefix(self) -> str:
        return self.id + "_"

    @property
    def base_path(self) -> str:
        return self.api.base_path or f"/api/plugins/{self.id}"

    def default_permissions(self, roles: frozenset[str]) -> frozenset[str]:
        """The permissions the manifest grants by default to any of ``roles``."""
        return frozenset(p.key for p in self.permissions if roles.intersection(p.default_roles))


def _path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(root)"


def parse_manifest(data: object) -> Manifest:
    """Validate a manifest document; raise ManifestError naming every bad field's path."""
    if not isinstance(data, dict):
        raise ManifestError(
            "invalid manifest: (root): must be a mapping",
            details=[{"path": "(root)", "message": "must be a mapping"}],
        )
    try:
        return stored_manifest(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            path, message = _path(tuple(err["loc"])), str(err["msg"]).removeprefix("Value error, ")
            nested = re.match(r"^([a-z_]+(?:\.[a-z0-9_]+)+): (.*)$", message)
            if nested:
                path, message = nested[1], nested[2]
            problems.append({"path": path, "message": message})
        first = problems[0]
        raise ManifestError(
            f"invalid manifest: {first['path']}: {first['message']}", details=problems
        ) from None


# Manifests parsed, by (id, version), with the content they were parsed from (canonical JSON:
# `1`, `1.0` and `true` are equal in Python and different in a JSON Schema).
_STORED: dict[tuple[str, str], tuple[str, Manifest]] = {}
_STORED_MAX = 1024


def _canonical(raw: Mapping[str, Any]) -> str | None:
    try:
        return json.dumps(raw, sort_keys=True, default=repr)
    except (TypeError, ValueError):  # keys of mixed types: parsed without the cache
        return None


def stored_manifest(raw: Mapping[str, Any]) -> Manifest:
    """A manifest parsed once per content: validating one takes tens of milliseconds (each
    event's JSON Schema is checked), and the platform reads the same few at start-up and on
    every permission and navigation lookup. The content is compared on each hit, so a manifest
    stored anew under the same id and version is parsed anew; the model is built from a copy,
    so its caller changing ``raw`` afterwards changes nothing. Raises pydantic's
    ``ValidationError``; ``parse_manifest`` turns it into a ``ManifestError``."""
    key = (str(raw.get("id")), str(raw.get("version")))  # any value: the content decides
    content = _canonical(raw)
    hit = _STORED.get(key)
    if content is not None and hit is not None and hit[0] == content:
        return hit[1]
    manifest = Manifest.model_validate(copy.deepcopy(dict(raw)))
    if content is not None:
        if len(_STORED) >= _STORED_MAX:
            _STORED.clear()
        _STORED[key] = (content, manifest)
    return manifest


# libyaml's safe loader (same documents accepted, five times faster) where the wheel has it.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def find_plugin_root(package: Path) -> Path:
    """Where a plugin's manifest and migrations are, given its package's folder: that folder
    when installed from a wheel, the distribution's folder (above ``src/``) in a source
    checkout."""
    return package if (package / MANIFEST_FILE).exists() else package.parents[1]


def load_manifest(path: Path) -> Manifest:
    """Read ``plexica-plugin.yaml`` (or the folder holding it)."""
    file = path / MANIFEST_FILE if path.is_dir() else path
    try:
        data = yaml.load(file.read_text(encoding="utf-8"), Loader=_YAML_LOADER)  # noqa: S506 - safe
    except OSError as exc:
        raise ManifestError(f"cannot read {file}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ManifestError(f"invalid manifest: not YAML: {exc}") from None
    return parse_manifest(data)


def load_migrations(manifest: Manifest, root: Path) -> list[tuple[str, str]]:
    """``(name, sql)`` of the manifest's migration files in order (``0001_init.sql`` ...)."""
    if manifest.migrations is None:
        return []
    folder = (root / manifest.migrations).resolve()
    if not folder.is_dir():
        raise ManifestError(
            f"invalid manifest: migrations: folder {manifest.migrations!r} not found",
            details=[{"path": "migrations", "message": "folder not found"}],
        )
    files = sorted(folder.glob("*.sql"))
    bad = [f.name for f in files if not re.match(r"^\d{4}_[a-z0-9_]+\.sql$", f.name)]
    if bad:
        raise ManifestError(
            f"invalid manifest: migrations: {bad[0]!r} is not named NNNN_name.sql",
            details=[{"path": "migrations", "message": f"{bad[0]} is not named NNNN_name.sql"}],
        )
    return [(f.stem, f.read_text(encoding="utf-8")) for f in files]


def manifest_json_schema() -> dict[str, Any]:
    schema = Manifest.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Plexica plugin manifest (plexica-plugin.yaml)"
    return schema
