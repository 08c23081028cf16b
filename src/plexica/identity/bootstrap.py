"""Start-up of the built-in provider: the operator realm and the first operator. Idempotent."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from plexica.identity import repository, service
from plexica.identity.names import CREDENTIALS_FILE
from plexica.kit.db import Database
from plexica_sdk.context import SUPER_ADMIN


@dataclass(frozen=True)
class OperatorCredentials:
    email: str
    password: str


async def bootstrap(
    db: Database, base_url: str, operator_email: str, data_dir: Path | None
) -> OperatorCredentials | None:
    """Ensure the operator realm; with ``data_dir``, also the first operator.

    Returns the new operator's credentials on the start that created them. The password is
    written to ``data_dir`` (mode 0600) before the transaction commits, so it is never lost and
    never logged.
    """
    async with db.session() as session:
        await service.ensure_realm(session, service.OPERATOR_REALM, None, base_url)
        if data_dir is None or await repository.count_users(session, service.OPERATOR_REALM):
            return None
        credentials = OperatorCredentials(operator_email, service.generate_password())
        await service.create_user(
            session, service.OPERATOR_REALM, credentials.email, credentials.password,
            {SUPER_ADMIN},
        )  # fmt: skip
        write_credentials(data_dir / CREDENTIALS_FILE, credentials)
    return credentials


def write_credentials(path: Path, credentials: OperatorCredentials) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"email": credentials.email, "password": credentials.password}, fh)
