"""HTML fragments for the web shell: a plugin's pages are server-rendered snippets (htmx)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape
from pydantic import ValidationError

from plexica_sdk.errors import PlexicaError
from plexica_sdk.guard import KiB, MiB

# The shell's design system: ``{% from "plexica/macros.html" import button, field, table, alert %}``
# renders with the shell's own classes (``px-*``), so plugin pages look like the rest.
DESIGN_TEMPLATES = Path(__file__).parent / "templates"

# A file chosen in a page's form (``<input type="file">``) reaches the plugin as a form field
# holding its bytes in URL-safe base64, so a plugin needs no multipart parser (ADR 0230).
MAX_UPLOAD_BYTES = 5 * MiB
# What the form a plugin route receives may then weigh: the encoded file and the other fields.
UPLOAD_FORM_BYTES = MAX_UPLOAD_BYTES * 4 // 3 + 64 * KiB
# Items on one list page, unless the installation's ``page_size`` setting says otherwise.
PAGE_SIZE = 25


class UploadError(PlexicaError):
    status, code = 400, "invalid_upload"


def encode_upload(content: bytes) -> str:
    """A file's bytes as the value of the form field the shell forwards (ADR 0230)."""
    return base64.urlsafe_b64encode(content).decode("ascii")


def uploaded(form: dict[str, str], name: str) -> bytes:
    """The bytes of the file field ``name`` of a form the shell forwarded (empty: none
    chosen)."""
    try:
        return base64.b64decode(form.get(name, "").encode("ascii"), altchars=b"-_", validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise UploadError(f"the field {name!r} is not a file sent by the shell") from None


class Fragments:
    """Jinja2 templates with autoescaping on; ``render`` answers an HTML fragment."""

    def __init__(self, folder: Path) -> None:
        self.env = Environment(
            loader=ChoiceLoader([FileSystemLoader(folder), FileSystemLoader(DESIGN_TEMPLATES)]),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            enable_async=False,
        )

    def html(self, template: str, **context: Any) -> str:
        return self.env.get_template(template).render(**context)

    def render(self, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(self.html(template, **context), status_code=status_code)


async def form_fields(request: Request) -> dict[str, str]:
    """The fields of a form the shell forwards (``application/x-www-form-urlencoded``), last
    value per name, stripped; no multipart parser needed for a page's forms."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v.strip() for k, v in parse_qsl(body, keep_blank_values=True)}


def field_errors(exc: ValidationError, messages: dict[str, str] | None = None) -> dict[str, str]:
    """A message per field from a model's validation error, for a form shown again with its
    errors next to the fields; ``messages`` gives friendlier text for some fields."""
    out: dict[str, str] = {}
    for error in exc.errors():
        name = str(error["loc"][-1]) if error["loc"] else "form"
        out.setdefault(name, (messages or {}).get(name, str(error["msg"])))
    return out


def filled(form: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    """The fields ``names`` of a form that are not empty: a model's defaults stand for the rest."""
    return {k: form[k] for k in names if form.get(k)}


def back(to: str) -> RedirectResponse:
    """The answer to a form applied: ``to`` (relative to the plugin's UI root, so the shell
    shows it as one of its pages) after a 303."""
    return RedirectResponse(to, status_code=303)


def page_size(settings: Mapping[str, Any]) -> int:
    """How many items a list page shows: the installation's ``page_size`` setting."""
    return int(settings.get("page_size", PAGE_SIZE))
