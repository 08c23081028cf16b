"""The ``plexica`` script. ``plexica version`` answers before the command tree and ``typer``
load (typer converts every parameter through pydantic, ~0.2 s of CPU); everything else goes to
:data:`plexica.cli.main.app`."""

from __future__ import annotations

import gc
import sys


def main() -> None:
    if sys.argv[1:2] == ["up"]:
        # Importing and building the apps makes many long-lived objects and few cycles: the
        # cyclic GC rescanning them cost ~10 % of the imports' CPU for nothing. It comes back
        # once the platform is ready (plexica.cli.up.collect_once_ready).
        gc.disable()
    if sys.argv[1:] == ["version"]:
        from plexica import __version__

        print(__version__)
        return
    from plexica.cli.main import app

    app(prog_name="plexica")
