"""Every operation's OpenAPI lists the error answers it can give, with the one error body
(ADR 0139): a route declares only the answers particular to it (``responses={409: ...}``)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "description": "Stable, machine-readable."},
                "message": {"type": "string"},
                "details": {"description": "Structured context, or null."},
            },
        }
    },
}
REQUEST_ID = {
    "description": "The request's id, also in the logs: quote it when reporting a problem.",
    "schema": {"type": "string"},
}
# What any operation may answer, whoever serves it: the edge's decision (401, 403, 404, 429),
# the input guard (400, 413, 415, 422) and a service that cannot serve yet (503).
COMMON = {
    "400": "Malformed request (encoding, NUL, parameters)",
    "401": "No valid bearer token",
    "403": "Not allowed for this caller",
    "404": "No such route or object",
    "413": "Body larger than the route's limit",
    "415": "Body of a media type the route does not take",
    "422": "Invalid input",
    "429": "Rate limited; see Retry-After",
    "503": "Temporarily unavailable; see Retry-After",
}
WRITE_ONLY = {"409": "Conflicts with the current state"}
WRITES = {"post", "put", "patch", "delete"}
METHODS = WRITES | {"get", "head", "options"}


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {"X-Request-ID": REQUEST_ID},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the error answers and the ``Error`` schema to a generated OpenAPI document."""
    schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for operations in schema.get("paths", {}).values():
        for method, operation in operations.items():
            if method not in METHODS:
                continue
            responses = operation.setdefault("responses", {})
            extra = COMMON | (WRITE_ONLY if method in WRITES else {})
            for status, description in extra.items():
                responses.setdefault(status, _error_response(description))
            for status, response in responses.items():
                if status[:1] in "45" and status != "default":
                    # Declared by the route with a description only, or FastAPI's own 422 body
                    # ({"detail": ...}) that no Plexica service sends: the one error body.
                    text = response.get("description") or extra.get(status, "Error")
                    responses[status] = _error_response(text)
    schemas = schema["components"]["schemas"]
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return schema


def install_error_docs(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
