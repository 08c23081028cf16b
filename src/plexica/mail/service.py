"""Which mailer the platform uses: SMTP when ``PLEXICA_SMTP_URL`` is set, else the dev mailbox
(ADR 0225): the mail is kept in ``platform.dev_mail`` for the operator (`plexica mail list`)
and logged, so that ``plexica up`` with nothing installed still hands out invite links."""

from __future__ import annotations

import structlog

from plexica.kit.db import Database
from plexica.kit.mail import Mail, Mailer, SmtpMailer
from plexica.mail import repository
from plexica.mail.repository import StoredMail
from plexica.settings import Settings

log = structlog.get_logger("plexica.mail")


class DevMailbox:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def send(self, mail: Mail) -> None:
        async with self.db.session() as session:
            await repository.insert(session, mail.to, mail.subject, mail.text)
        # The body is the whole point in development: the link is in it.
        log.info("dev_mail_kept", to=mail.to, subject=mail.subject, body=mail.text)


def mailer_for(settings: Settings, db: Database) -> Mailer:
    if settings.smtp_url is None:
        return DevMailbox(db)
    return SmtpMailer(
        settings.smtp_url.get_secret_value(), settings.mail_from, settings.smtp_timeout_seconds
    )


async def latest(db: Database, limit: int = 50, recipient: str | None = None) -> list[StoredMail]:
    async with db.session() as session:
        return await repository.latest(session, limit, recipient)
