"""Flag errors with stable codes."""

from __future__ import annotations

from plexica_sdk.errors import ConflictError, NotFoundError, PlexicaError


class FlagNotFoundError(NotFoundError):
    code = "flag_not_found"


class FlagExistsError(ConflictError):
    code = "flag_exists"


class InvalidFlagError(PlexicaError):
    status, code = 422, "invalid_flag"
