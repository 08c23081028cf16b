"""The key ring that seals realm private keys, and where ``plexica up`` keeps its key (ADR 0150).

Pure logic and files: no server needed."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from plexica.identity import custody
from plexica.identity.custody import KeyCustodyError, KeyRing
from plexica.settings import Settings, SettingsError, load_settings

OLD = "old-key-encryption-key-0123456789abcdef"
NEW = "new-key-encryption-key-0123456789abcdef"
PEM = "-----BEGIN PRIVATE KEY-----\nMIIE...\n-----END PRIVATE KEY-----\n"


def test_the_first_key_seals_and_every_key_opens() -> None:
    sealed = KeyRing([OLD]).seal(PEM)
    assert PEM not in sealed.token
    assert "PRIVATE" not in sealed.token
    ring = KeyRing([NEW, OLD])
    assert ring.open(sealed.token, sealed.key_id) == PEM
    assert ring.open(sealed.token, None) == PEM  # the id is a hint, not needed
    resealed = ring.seal(PEM)
    assert resealed.key_id == ring.primary == KeyRing([NEW]).primary != sealed.key_id
    assert KeyRing([NEW]).open(resealed.token, resealed.key_id) == PEM


def test_a_ring_without_the_sealing_key_says_which_key_is_missing() -> None:
    sealed = KeyRing([OLD]).seal(PEM)
    with pytest.raises(KeyCustodyError) as caught:
        KeyRing([NEW]).open(sealed.token, sealed.key_id)
    message = str(caught.value)
    assert "\n" not in message
    assert sealed.key_id in message
    assert "PLEXICA_KEY_ENCRYPTION_KEY" in message
    assert OLD not in message
    assert NEW not in message


def test_key_ids_are_stable_and_reveal_nothing() -> None:
    assert KeyRing([OLD]).primary == KeyRing.parse(f" {OLD} ").primary
    assert OLD[:8] not in KeyRing([OLD]).primary
    assert KeyRing.parse(f"{NEW},{OLD}").ids == (KeyRing([NEW]).primary, KeyRing([OLD]).primary)


def test_short_or_empty_keys_are_refused() -> None:
    with pytest.raises(KeyCustodyError):
        KeyRing.parse("")
    with pytest.raises(KeyCustodyError, match="at least 32"):
        KeyRing.parse(f"{NEW},short")


def test_the_setting_is_checked_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(custody.ENV, f"{NEW},short")
    with pytest.raises(SettingsError, match="PLEXICA_KEY_ENCRYPTION_KEY is too short"):
        load_settings()
    monkeypatch.setenv(custody.ENV, f"{NEW},{OLD}")
    assert custody.ring_from(load_settings()) is not None


def test_plexica_up_keeps_its_key_in_the_data_dir(tmp_path: Path) -> None:
    bare = Settings(key_encryption_key=None)
    first = custody.with_persisted_key(bare, tmp_path)
    path = tmp_path / custody.KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.key_encryption_key is not None
    assert len(first.key_encryption_key.get_secret_value()) >= 32
    again = custody.with_persisted_key(bare, tmp_path)
    assert again.key_encryption_key == first.key_encryption_key
    # The CLI finds it there, and never makes one.
    assert custody.with_found_key(bare, tmp_path).key_encryption_key == first.key_encryption_key
    assert custody.with_found_key(bare, tmp_path / "other").key_encryption_key is None
    assert not (tmp_path / "other").exists()


def test_the_setting_wins_over_the_data_dir(tmp_path: Path) -> None:
    given = Settings(key_encryption_key=SecretStr(NEW))
    assert custody.with_persisted_key(given, tmp_path).key_encryption_key == SecretStr(NEW)
    assert not (tmp_path / custody.KEY_FILE).exists()
