"""Sending mail: the one SMTP client of the platform (ADR 0225).

``PLEXICA_SMTP_URL`` picks the transport: ``smtp://`` (plain, or STARTTLS when the server offers
it), ``smtp+starttls://`` (STARTTLS required), ``smtps://`` (TLS from the first byte); a
``user:password@`` part logs in. Every step (connect, TLS, login, each command) has its own
timeout. A failure is a ``MailError`` in the project's error shape: 503 ``mail_unavailable``
when the server cannot be reached, 502 ``mail_rejected`` when it refuses the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol
from urllib.parse import unquote, urlsplit

import aiosmtplib

from plexica_sdk.errors import PlexicaError

DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    text: str


class MailError(PlexicaError):
    status, code = 503, "mail_unavailable"


class Mailer(Protocol):
    async def send(self, mail: Mail) -> None:
        """Hand the mail over for delivery; MailError when it cannot be."""
        ...


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    username: str | None
    password: str | None
    use_tls: bool
    start_tls: bool | None  # None: when the server offers it

    @classmethod
    def parse(cls, url: str) -> SmtpTarget:
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError("an smtp://, smtps:// or smtp+starttls:// URL with a host")
        return cls(
            host=parts.hostname,
            port=parts.port or DEFAULT_PORTS[parts.scheme],
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=parts.scheme == "smtps",
            start_tls=True if parts.scheme == "smtp+starttls" else None,
        )


def message(mail: Mail, sender: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = mail.to
    msg["Subject"] = mail.subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1].rstrip(">") or None)
    msg.set_content(mail.text)
    return msg


class SmtpMailer:
    def __init__(self, url: str, sender: str, timeout: float) -> None:
        self.target = SmtpTarget.parse(url)
        self.sender = sender
        self.timeout = timeout

    async def send(self, mail: Mail) -> None:
        t = self.target
        try:
            await aiosmtplib.send(
                message(mail, self.sender),
                hostname=t.host,
                port=t.port,
                username=t.username,
                password=t.password,
                use_tls=t.use_tls,
                start_tls=t.start_tls,
                timeout=self.timeout,
            )
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPTimeoutError) as exc:
            raise _unreachable(exc) from None
        except (aiosmtplib.SMTPRecipientsRefused, aiosmtplib.SMTPResponseException) as exc:
            raise MailError(
                "the mail server refused the message",
                code="mail_rejected",
                status=502,
                details={"reason": type(exc).__name__},
            ) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise _unreachable(exc) from None


def _unreachable(exc: BaseException) -> MailError:
    return MailError(
        "the mail server cannot be reached; try again later",
        details={"reason": type(exc).__name__},
        headers={"Retry-After": "30"},
    )
