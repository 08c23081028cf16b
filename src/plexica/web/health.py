"""How the tenant health page shows the core's numbers (ADR 0205)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_bytes(n: int) -> str:
    size, unit = float(n), 0
    while size >= 1024 and unit < len(UNITS) - 1:
        size, unit = size / 1024, unit + 1
    return f"{int(size)} {UNITS[0]}" if unit == 0 else f"{size:.1f} {UNITS[unit]}"


def health_row(tenant: dict[str, Any]) -> dict[str, Any]:
    p95 = tenant.get("p95_seconds")
    signed = tenant.get("last_sign_in")
    return tenant | {
        "p95": "n/a" if p95 is None else f"{p95 * 1000:.0f} ms",
        "storage": human_bytes(int(tenant.get("storage_bytes", 0))),
        "last_sign_in": (
            datetime.fromisoformat(signed).strftime("%Y-%m-%d %H:%M UTC") if signed else "never"
        ),
    }
