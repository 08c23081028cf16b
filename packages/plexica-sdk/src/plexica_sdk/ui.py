"""HTML fragments for the web shell: a plugin's pages are server-rendered snippets (htmx)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape

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
