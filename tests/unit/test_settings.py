from pathlib import Path

import pytest

from plexica.settings import Settings, SettingsError, load_settings


def test_defaults_are_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLEXICA_DATABASE_URL", raising=False)
    s = load_settings()
    assert s.embedded_database
    assert s.port == 3000


def test_unknown_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLEXICA_DATABSE_URL", "postgresql://x@localhost/db")
    with pytest.raises(SettingsError, match="unknown setting PLEXICA_DATABSE_URL"):
        load_settings()


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("PLEXICA_DATABASE_URL", "not a url"),
        ("PLEXICA_REDIS_URL", "http://localhost"),
        ("PLEXICA_PORT", "99999"),
        ("PLEXICA_LOG_LEVEL", "LOUD"),
    ],
)
def test_malformed_setting_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as exc:
        load_settings()
    message = str(exc.value)
    assert message.startswith(f"invalid setting {var}:")
    assert "\n" not in message


def test_database_url_uses_asyncpg_driver() -> None:
    s = Settings(database_url="postgresql://u:p@h:5432/d", data_dir=Path("/tmp/x"))
    assert s.sqlalchemy_url == "postgresql+asyncpg://u:p@h:5432/d"


def test_empty_variables_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLEXICA_REDIS_URL", "")
    assert load_settings().redis_url is None


def test_keycloak_needs_its_admin_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLEXICA_KEYCLOAK_URL", "http://keycloak:8080")
    with pytest.raises(SettingsError) as exc:
        load_settings()
    assert str(exc.value) == (
        "PLEXICA_KEYCLOAK_CLIENT_ID (or PLEXICA_KEYCLOAK_ADMIN_USER) is required with "
        "PLEXICA_KEYCLOAK_URL"
    )
