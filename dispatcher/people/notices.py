"""Emails to supporters themselves (confirmation links, receipts), as opposed to letters.

Each carries a one-click way out (RFC 8058): ``List-Unsubscribe`` with the signed revoke URL and
``List-Unsubscribe-Post: List-Unsubscribe=One-Click``, so a mail client can revoke the consent
with a POST and no page; ``Auto-Submitted`` (RFC 3834) keeps auto-responders from answering.
They go through the letters' transport: SMTP when configured, else the local outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from email.utils import format_datetime, parseaddr

from dispatcher.channels import Reply
from dispatcher.channels.email import (
    MaildirTransport,
    MailTransport,
    OutgoingMail,
    SmtpTransport,
    encode_body,
)
from dispatcher.mime import clean, mailbox_header, unstructured
from dispatcher.settings import Settings


@dataclass(frozen=True)
class Notice:
    name: str
    email: str
    language: str  # of the text, for Content-Language
    subject: str
    body: str
    unsubscribe: str  # the https URL that revokes the consent in one click


def transport_for(settings: Settings) -> MailTransport:
    if settings.smtp_url:
        return SmtpTransport(settings.smtp_url, 1, settings.smtp_timeout, settings.smtp_cafile)
    return MaildirTransport(settings.outbox)


def build(sender: str, notice: Notice, now: dt.datetime) -> OutgoingMail:
    org_name, org_address = parseaddr(sender)
    domain = org_address.rpartition("@")[2]
    cte, body = encode_body(notice.body)
    head = [
        f"Message-ID: <{secrets.token_hex(12)}@{domain}>\r\n",
        f"Date: {format_datetime(now.astimezone(dt.UTC).replace(microsecond=0))}\r\n",
        mailbox_header("From", [(clean(org_name), org_address)]),
        mailbox_header("To", [(notice.name, notice.email)]),
        unstructured("Subject", notice.subject),
        f"List-Unsubscribe: <{notice.unsubscribe}>\r\n",
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
        "Auto-Submitted: auto-generated\r\n",
        "MIME-Version: 1.0\r\n",
        'Content-Type: text/plain; charset="utf-8"\r\n',
        f"Content-Transfer-Encoding: {cte}\r\n",
        f"Content-Language: {notice.language}\r\n",
        "\r\n",
    ]
    data = "".join(head).encode("ascii") + body
    return OutgoingMail(sender=org_address, recipients=(notice.email,), data=data)


@contextlib.asynccontextmanager
async def opened(settings: Settings) -> AsyncIterator[Callable[[Notice, dt.datetime], Awaitable[Reply]]]:
    """A started transport, as a function that sends one notice; closed on the way out."""
    # Made in a worker thread: an SMTP transport loads the system's certificates for its TLS
    # context, tens of milliseconds the event loop would otherwise stand still for.
    transport = await asyncio.to_thread(transport_for, settings)
    await transport.start()

    def send_one(notice: Notice, now: dt.datetime) -> Awaitable[Reply]:
        return transport.send(build(settings.sender, notice, now))

    try:
        yield send_one
    finally:
        await transport.close()


async def send(settings: Settings, notices: list[Notice], now: dt.datetime) -> None:
    """Send each notice; a transport error propagates (the caller decides whether to retry)."""
    async with opened(settings) as send_one:
        for notice in notices:
            await send_one(notice, now)
