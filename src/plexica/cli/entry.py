"""The ``plexica`` script. ``plexica version`` answers before the command tree and ``typer``
load (typer converts every parameter through pydantic, ~0.2 s of CPU); everything else goes to
:data:`plexica.cli.main.app`."""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] == ["version"]:
        from plexica import __version__

        print(__version__)
        return
    from plexica.cli.main import app

    app(prog_name="plexica")
