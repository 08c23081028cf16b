"""Pin the chart's third-party images by digest at deploy time (ADR 0254).

CI's deploy job renders the chart as it will install it, asks the registry for the digest each
third-party image's tag names now, and installs with them as ``image.digests``: the pods then run
exactly the image resolved once, whatever the tag points at later (a node pulling again, a
rescheduled pod). Plexica's own images are pinned by the digests CI pushed (ADR 0212).

    helm template plexica deploy/helm/plexica -f <values> --set image.registry=<prefix> \\
      | python3 deploy/image_pins.py --registry <prefix> > third-party-digests.json

Standard library only: the deploy job has Python and Docker, not the project's environment.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

IMAGE = re.compile(r"""^\s*(?:-\s+)?image:\s*["']?([^"'\s]+)["']?\s*$""", re.MULTILINE)
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def third_party_images(rendered: str, registry: str) -> dict[str, str]:
    """Repository (the key of ``image.digests``) -> its reference by tag, for every container
    image of ``rendered`` not already pinned and not under ``registry`` (Plexica's own)."""
    out = {}
    for ref in IMAGE.findall(rendered):
        if "@" in ref or (registry and ref.startswith(registry.rstrip("/") + "/")):
            continue
        repository, _, tag = ref.rpartition(":")
        if not repository or "/" in tag:  # no tag: a registry port, not a tag
            raise ValueError(f"image {ref!r} names no tag to resolve")
        out[repository] = ref
    return out


def pins(images: dict[str, str], resolve: Callable[[str], str]) -> dict[str, Any]:
    digests = {}
    for repository, ref in sorted(images.items()):
        digest = resolve(ref)
        if not DIGEST.match(digest):
            raise ValueError(f"{ref}: {digest!r} is no sha256 digest")
        digests[repository] = digest
    return {"image": {"digests": digests}}


def registry_digest(ref: str) -> str:
    """The digest of the manifest (an index for multi-platform images) the tag names now."""
    out = subprocess.run(
        ["docker", "buildx", "imagetools", "inspect", ref, "--format", "{{json .Manifest}}"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return str(json.loads(out.stdout)["digest"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", default="", help="Plexica's image prefix (not resolved)")
    args = parser.parse_args(argv)
    images = third_party_images(sys.stdin.read(), args.registry)
    json.dump(pins(images, registry_digest), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
