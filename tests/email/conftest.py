"""A real SMTP server for the email tests: aiosmtpd on 127.0.0.1, with a handler that keeps
every envelope and can be told to answer the next RCPT or DATA with an error. The whole stack
(`stack`) comes from the tests.support.stack plugin."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, cast

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.ports import free_port


class Inbox:
    """aiosmtpd handler: accepts mail into `envelopes`; `refuse_rcpt` and `refuse_data` hold
    replies (e.g. "550 5.1.1 no such mailbox") used, one each, before anything is accepted."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.refuse_rcpt: list[str] = []
        self.refuse_data: list[str] = []

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.refuse_rcpt:
            return self.refuse_rcpt.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refuse_data:
            return self.refuse_data.pop(0)
        self.envelopes.append(envelope)
        return "250 2.0.0 accepted"

    def messages(self) -> list[EmailMessage]:
        return [
            cast(
                EmailMessage,
                message_from_bytes(
                    (e.original_content or b"").replace(b"\r\n", b"\n"), policy=policy.default
                ),
            )
            for e in self.envelopes
        ]


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, str]]:
    """A running SMTP server and the SMTP_URL that reaches it."""
    port = free_port()
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, f"smtp://127.0.0.1:{port}"
    finally:
        controller.stop()
