"""What every page of a tenant shows of its branding: name, primary colour, logo (ADR 0093)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

COLOUR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")
ETAG_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


# Above it, white text falls under WCAG's 4.5:1 and dark text is the better choice.
LIGHT_THRESHOLD = 0.179


def _luminance(colour: str) -> float:
    def channel(hex2: str) -> float:
        c = int(hex2, 16) / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(colour[i : i + 2]) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


@dataclass(frozen=True)
class Brand:
    name: str | None = None
    colour: str | None = None
    # The logo's version (its ETag): the image URL changes with it, so browsers may cache it.
    logo: str | None = None

    @property
    def ink(self) -> str | None:
        """Text colour on the primary colour: whichever of dark or white contrasts more."""
        if self.colour is None:
            return None
        return "#111827" if _luminance(self.colour) > LIGHT_THRESHOLD else "#ffffff"

    @classmethod
    def of(cls, body: Any) -> Brand:
        if not isinstance(body, dict):
            return cls()
        name, colour, logo = body.get("name"), body.get("primary_color"), body.get("logo")
        etag = logo.get("etag") if isinstance(logo, dict) else None
        return cls(
            name=name if isinstance(name, str) and name else None,
            # Validated again here: the value goes into a <style> element.
            colour=colour if isinstance(colour, str) and COLOUR_RE.match(colour) else None,
            logo=etag.strip('"')
            if isinstance(etag, str) and ETAG_RE.match(etag.strip('"'))
            else None,
        )
