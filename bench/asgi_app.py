"""The core app for the ASGI server comparison (``/health`` does no I/O)."""

from plexica.app import create_app
from plexica.settings import Settings
from plexica_sdk.logs import configure_logging

app = create_app(Settings(database_url="postgresql://bench:bench@127.0.0.1:1/bench"))

configure_logging("core", "WARNING", "json")
