"""The SDK's typed event models against the schemas their emitters declare: every type of the
core's registry and of the shipped plugins' manifests has a model whose fields are the schema's
properties, which reads a document the schema accepts and writes it back unchanged."""

from __future__ import annotations

import subprocess
import sys
import types
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel

from plexica.events import catalog
from plexica_sdk.contracts import MODELS, DealWon, EventData, model_for, parse
from plexica_sdk.events import Event, InvalidEventError
from plexica_sdk.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[2]


def _declared() -> dict[str, tuple[str, int, dict[str, Any]]]:
    """type -> (source, schema version, schema): the core's registry and both manifests."""
    declared: dict[str, tuple[str, int, dict[str, Any]]] = {}
    for event_type, version in catalog.SCHEMAS:
        if version == catalog.current_version(event_type):
            declared[event_type] = ("/plexica/core", version, catalog.SCHEMAS[event_type, version])
    for plugin in ("crm", "billing"):
        for emitted in load_manifest(ROOT / "plugins" / plugin).events.emits:
            assert emitted.data_schema is not None, emitted.type
            entry = (f"/plugins/{plugin}", emitted.schema_version, emitted.data_schema)
            declared[emitted.type] = entry
    return declared


DECLARED = _declared()

# The subset of JSON Schema the declarations use; a new keyword needs the generator taught it.
KEYWORDS = {
    "type",
    "properties",
    "required",
    "enum",
    "format",
    "pattern",
    "items",
    "minProperties",
    "additionalProperties",
    "minimum",
}
EXAMPLES = {
    r"^[0-9]+(\.[0-9]+)?$": ("120.50", "0"),
    r"^-?[0-9]+(\.[0-9]+)?$": ("-3.25", "7"),
    r"^[A-Z]{3}$": ("EUR", "USD"),
}


def sample(schema: dict[str, Any], *, full: bool) -> Any:
    """A document the schema accepts: with every property, non-null (``full``), or with only
    the required ones, null where allowed."""
    assert set(schema) <= KEYWORDS, set(schema) - KEYWORDS
    if "enum" in schema:
        return schema["enum"][-1 if full else 0]
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    if not full and "null" in kinds:
        return None
    kind = next(k for k in kinds if k != "null")
    if kind == "object":
        properties: dict[str, Any] = schema.get("properties", {})
        keys = list(properties) if full else schema.get("required", [])
        keys = keys or list(properties)[: schema.get("minProperties", 0)]
        return {key: sample(properties[key], full=full) for key in keys}
    if kind == "array":
        return [sample(schema["items"], full=full)] * (2 if full else 0)
    if kind == "integer":
        return schema.get("minimum", -5) + (3 if full else 0)
    if kind == "boolean":
        return full
    assert kind == "string", kind
    if schema.get("format") == "uuid":
        return str(uuid.uuid4())
    if schema.get("format") == "date-time":
        return "2026-03-04T05:06:07+00:00"
    if "pattern" in schema:
        return EXAMPLES[schema["pattern"]][0 if full else 1]
    assert "format" not in schema, schema["format"]
    return "text" if full else ""


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _arms(annotation: Any) -> list[Any]:
    """The types a field admits besides None."""
    if get_origin(annotation) in (Union, types.UnionType):
        return [a for a in get_args(annotation) if a is not type(None)]
    return [annotation]


def _admits_none(annotation: Any) -> bool:
    return annotation is None or type(None) in get_args(annotation)


def _holds(model: type[BaseModel], schema: dict[str, Any], where: str) -> None:
    """The model's fields are the schema's properties, with its required ones and types."""
    fields = {field.alias or name: field for name, field in model.model_fields.items()}
    properties: dict[str, Any] = schema.get("properties", {})
    assert set(fields) == set(properties), where
    required = {key for key, field in fields.items() if field.is_required()}
    assert required == set(schema.get("required", [])), where
    for key, field in fields.items():
        prop, at = properties[key], f"{where}.{key}"
        kinds = prop.get("type", [])
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if field.is_required():
            assert _admits_none(field.annotation) == ("null" in kinds), at
        else:
            assert field.default is None, at
        [arm] = _arms(field.annotation)
        if "enum" in prop:
            assert get_origin(arm) is Literal, at
            assert set(get_args(arm)) == set(prop["enum"]), at
        elif "object" in kinds:
            assert isinstance(arm, type), at
            assert issubclass(arm, BaseModel), at
            _holds(arm, prop, at)
        elif "array" in kinds:
            assert get_origin(arm) is tuple, at
            item = get_args(arm)[0]
            if prop["items"].get("type") == "object":
                _holds(item, prop["items"], f"{at}[]")
            else:
                assert item is str, at
        elif prop.get("format") == "uuid":
            assert arm is uuid.UUID, at
        elif prop.get("pattern", "").endswith("[0-9]+(\\.[0-9]+)?$"):
            assert arm is Decimal, at
        else:
            expected = {"string": str, "integer": int, "boolean": bool}
            assert arm is expected[next(k for k in kinds if k != "null")], at


def test_every_declared_event_type_has_a_model_and_every_model_a_declared_type() -> None:
    assert len(DECLARED) == 44
    assert set(MODELS) == set(DECLARED)
    for event_type, model in MODELS.items():
        assert model.event_type == event_type
        assert model.event_version == DECLARED[event_type][1], event_type
        assert model.model_config.get("frozen"), event_type


@pytest.mark.parametrize("event_type", sorted(DECLARED))
def test_the_model_is_its_schema(event_type: str) -> None:
    _holds(MODELS[event_type], DECLARED[event_type][2], event_type)


@pytest.mark.parametrize("full", [True, False], ids=["every-property", "only-required"])
@pytest.mark.parametrize("event_type", sorted(DECLARED))
def test_a_document_the_schema_accepts_is_read_and_written_back(
    event_type: str, full: bool
) -> None:
    source, _, schema = DECLARED[event_type]
    document = sample(schema, full=full)
    assert not list(_validator(schema).iter_errors(document))
    model = MODELS[event_type]
    read = model.of(Event(source=source, type=event_type, data=document))
    assert isinstance(read, model)
    written = read.model_dump(mode="json")
    assert not list(_validator(schema).iter_errors(written))
    assert written == document
    with pytest.raises(ValueError, match="frozen"):
        setattr(read, next(iter(model.model_fields)), None)


@pytest.mark.parametrize("event_type", sorted(DECLARED))
def test_a_document_without_a_required_property_is_refused(event_type: str) -> None:
    source, _, schema = DECLARED[event_type]
    document = sample(schema, full=True)
    for key in schema["required"]:
        missing = {k: v for k, v in document.items() if k != key}
        with pytest.raises(InvalidEventError, match="does not fit"):
            MODELS[event_type].of(Event(source=source, type=event_type, data=missing))


def test_an_empty_change_set_and_another_type_are_refused() -> None:
    source, _, schema = DECLARED["crm.deal.updated"]
    document = {**sample(schema, full=True), "changes": {}}
    with pytest.raises(InvalidEventError, match="does not fit"):
        MODELS["crm.deal.updated"].of(Event(source=source, type="crm.deal.updated", data=document))
    with pytest.raises(InvalidEventError, match=r"is not crm\.deal\.won"):
        DealWon.of(Event(source=source, type="crm.deal.updated", data=document))


def test_consumers_dispatch_on_the_type() -> None:
    source, _, schema = DECLARED["crm.deal.won"]
    won = parse(Event(source=source, type="crm.deal.won", data=sample(schema, full=True)))
    assert isinstance(won, DealWon)
    assert won.amount == Decimal("120.50")
    assert model_for("acme.thing.happened") is None
    with pytest.raises(InvalidEventError, match="no model"):
        parse(Event(source="/plugins/acme", type="acme.thing.happened", data={}))
    assert issubclass(MODELS["plexica.user.invited"], EventData)


def test_the_sdk_models_load_without_the_platform_or_the_plugins() -> None:
    probe = (
        "import sys, plexica_sdk.contracts; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'plexica', 'plexica_crm', 'plexica_billing'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
