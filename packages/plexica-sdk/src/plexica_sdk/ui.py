"""HTML fragments for the web shell: a plugin's pages are server-rendered snippets (htmx)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape
from pydantic import ValidationError

# The shell's design system: ``{% from "plexica/macros.html" import button, field, table, alert %}``
# renders with the shell's own classes (``px-*``), so plugin pages look like the rest.
DESIGN_TEMPLATES = Path(__file__).parent / "templates"


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
