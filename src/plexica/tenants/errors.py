"""The refusals of the tenant lifecycle, in the platform's error shape."""

from __future__ import annotations

from plexica_sdk.errors import ConflictError, NotFoundError, PlexicaError


class TenantNotFoundError(NotFoundError):
    code = "tenant_not_found"


class TenantExistsError(ConflictError):
    code = "tenant_exists"


class IllegalTransitionError(ConflictError):
    code = "illegal_transition"


class TenantBusyError(ConflictError):
    code = "tenant_busy"


class ProvisioningFailedError(PlexicaError):
    status, code = 502, "provisioning_failed"


class DeletionIncompleteError(PlexicaError):
    status, code = 502, "deletion_incomplete"
