"""Custody of the realms' private signing keys: sealed at rest with a key ring from settings.

``PLEXICA_KEY_ENCRYPTION_KEY`` holds one secret, or several separated by commas: the first
seals, every one opens (so that a new secret can be put first and the keys re-sealed before the
old one is dropped, ADR 0150). Each secret (32+ characters) is stretched with HKDF-SHA256 into a
Fernet key (AES-128-CBC + HMAC-SHA256, from ``cryptography``). A short id derived from the same
secret names it in the database, so that an operator sees which secret a key is sealed with; the
id reveals nothing of the secret.

The ring is one per process, like the password hasher's policy: the composition roots
(``create_app``, ``plexica up``, the CLI) install it from settings before the provider runs.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr

from plexica.kit.datadir import persisted_secret
from plexica.settings import MIN_KEY_ENCRYPTION_KEY, Settings

KEY_FILE = "key-encryption-key"
ENV = "PLEXICA_KEY_ENCRYPTION_KEY"


class KeyCustodyError(Exception):
    """The ring is missing or cannot open a sealed key; the message is one line for operators."""


def _derive(secret: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(
        secret.encode()
    )


@dataclass(frozen=True)
class Sealed:
    token: str
    key_id: str


class KeyRing:
    def __init__(self, secrets_: Sequence[str]) -> None:
        if not secrets_:
            raise KeyCustodyError(f"{ENV} holds no key")
        for secret in secrets_:
            if len(secret) < MIN_KEY_ENCRYPTION_KEY:
                raise KeyCustodyError(
                    f"{ENV}: each key needs at least {MIN_KEY_ENCRYPTION_KEY} characters"
                )
        self._fernets = {
            _derive(s, b"plexica key id").hex()[:12]: Fernet(
                base64.urlsafe_b64encode(_derive(s, b"plexica realm signing keys"))
            )
            for s in secrets_
        }
        self.ids: tuple[str, ...] = tuple(self._fernets)
        self.primary = self.ids[0]

    @classmethod
    def parse(cls, value: str) -> KeyRing:
        return cls([part.strip() for part in value.split(",") if part.strip()])

    def seal(self, private_pem: str) -> Sealed:
        return Sealed(
            self._fernets[self.primary].encrypt(private_pem.encode()).decode(), self.primary
        )

    def open(self, token: str, key_id: str | None) -> str:
        """The PEM; tries the named key first, then the others (an id is only a hint)."""
        named = self._fernets.get(key_id or "")
        ordered = [named] if named is not None else []
        ordered += [f for f in self._fernets.values() if f is not named]
        try:
            return MultiFernet(ordered).decrypt(token.encode()).decode()
        except InvalidToken:
            raise KeyCustodyError(
                f"a realm signing key (sealed with key id {key_id}) cannot be opened with "
                f"{ENV} (key ids {', '.join(self.ids)}): set the key it was sealed with"
            ) from None


_ring: KeyRing | None = None


def install(ring: KeyRing | None) -> None:
    global _ring  # noqa: PLW0603 - one ring per process, set by the composition roots
    _ring = ring


def ring() -> KeyRing:
    if _ring is None:
        raise KeyCustodyError(
            f"no key encryption key: set {ENV} (the realms' private keys are sealed with it)"
        )
    return _ring


def ring_from(settings: Settings) -> KeyRing | None:
    if settings.key_encryption_key is None:
        return None
    return KeyRing.parse(settings.key_encryption_key.get_secret_value())


def install_from(settings: Settings) -> None:
    """Install the ring of ``settings``; without one, keep the ring already installed."""
    found = ring_from(settings)
    if found is not None:
        install(found)


def with_persisted_key(settings: Settings, data_dir: Path) -> Settings:
    """Without ``PLEXICA_KEY_ENCRYPTION_KEY``: the secret kept in the data directory (mode 0600),
    generated on the first start; the CLI finds it there too."""
    if settings.key_encryption_key is not None:
        return settings
    value = persisted_secret(data_dir / KEY_FILE)
    return settings.model_copy(update={"key_encryption_key": SecretStr(value)})


def with_found_key(settings: Settings, data_dir: Path) -> Settings:
    """For the CLI: ``PLEXICA_KEY_ENCRYPTION_KEY``, else the secret of ``plexica up``'s data
    directory if there is one (never a new one)."""
    if settings.key_encryption_key is not None or not (data_dir / KEY_FILE).is_file():
        return settings
    value = (data_dir / KEY_FILE).read_text().strip()
    return settings.model_copy(update={"key_encryption_key": SecretStr(value)})
