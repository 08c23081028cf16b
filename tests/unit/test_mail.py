"""``PLEXICA_SMTP_URL``: what each scheme means to the SMTP client, and what start-up refuses."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from plexica.kit.mail import SmtpTarget
from plexica.settings import SettingsError, load_settings


def test_schemes_ports_tls_and_login() -> None:
    plain = SmtpTarget.parse("smtp://127.0.0.1:1025")
    assert (plain.host, plain.port, plain.use_tls, plain.start_tls) == (
        "127.0.0.1",
        1025,
        False,
        None,
    )
    assert plain.username is None
    tls = SmtpTarget.parse("smtps://me%40corp:p%3Ass@mail.example")
    assert (tls.port, tls.use_tls, tls.username, tls.password) == (465, True, "me@corp", "p:ss")
    starttls = SmtpTarget.parse("smtp+starttls://mail.example")
    assert (starttls.port, starttls.start_tls) == (587, True)


@pytest.mark.parametrize("url", ["http://mail.example", "smtp://", "mail.example:25"])
def test_a_bad_smtp_url_stops_start_up(url: str) -> None:
    with pytest.raises(SettingsError, match="PLEXICA_SMTP_URL"):
        load_settings(smtp_url=SecretStr(url))


def test_the_url_is_a_secret() -> None:
    settings = load_settings(smtp_url=SecretStr("smtps://u:hunter2@mail.example"))
    assert "hunter2" not in repr(settings)
