"""A real SMTP server for tests: aiosmtpd on a free loopback port, keeping what it receives."""

from __future__ import annotations

import email
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from plexica.kit.ports import free_port

REFUSED_DOMAIN = "refused.example"
LINK_RE = re.compile(r"(https?://\S+/invite/([A-Za-z0-9_-]+))")


@dataclass
class Inbox:
    messages: list[Message] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.endswith("@" + REFUSED_DOMAIN):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        content = envelope.content
        raw = content if isinstance(content, bytes) else str(content).encode()
        with self.lock:
            self.messages.append(email.message_from_bytes(raw))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[Message]:
        with self.lock:
            return [m for m in self.messages if m["To"] == address]

    def last_link(self, address: str) -> tuple[str, str]:
        """The invite link of the newest mail to ``address`` and its token."""
        payload = self.to(address)[-1].get_payload(decode=True)
        assert isinstance(payload, bytes)
        body = payload.decode()
        found = LINK_RE.search(body)
        assert found is not None, body
        return found.group(1), found.group(2)


@contextmanager
def smtp_server() -> Iterator[tuple[str, Inbox]]:
    """``smtp://127.0.0.1:<port>`` and what it receives; stopped on exit."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{port}", inbox
    finally:
        controller.stop()
