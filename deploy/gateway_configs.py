"""The committed gateway configurations, as ``plexica gateway config`` generates them.

``scripts/gen-gateway-config`` rewrites ``deploy/traefik/dynamic/plexica.yml`` and
``deploy/kong/kong.yml`` for the shipped plugins (``plugins/*``) at the Compose/Kubernetes service
names; tests/deploy/test_gateway.py regenerates them and compares byte for byte.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
PLEXICA = Path(sys.executable).with_name("plexica")
REGENERATE = "scripts/gen-gateway-config"
TARGETS = {
    "traefik": DEPLOY / "traefik" / "dynamic" / "plexica.yml",
    "kong": DEPLOY / "kong" / "kong.yml",
}


def shipped_plugins() -> list[str]:
    return sorted(p.parent.name for p in (ROOT / "plugins").glob("*/plexica-plugin.yaml"))


def arguments() -> list[str]:
    args = ["--core-url", "http://core:3000", "--web-url", "http://web:3000"]
    for slug in shipped_plugins():
        args += ["--plugin", slug]
    return [*args, "--upstream-template", "http://plugin-{slug}:3000"]


def generate(kind: str) -> str:
    """What the generator prints; no PLEXICA_* setting of the caller's shell leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLEXICA_")}
    result = subprocess.run(
        [str(PLEXICA), "gateway", "config", kind, *arguments()],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"plexica gateway config {kind} failed: {result.stderr.strip()}")
    return result.stdout


def main() -> int:
    for kind, path in TARGETS.items():
        path.write_text(generate(kind))
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
