"""A digest as the bytes of one MIME message: multipart/mixed, the opening as the first text
part, then each letter as an inline text part of its own (so a mail client shows them in order
and a clerk can forward one). The Message-ID is the one the store decided for the digest; there
is no Reply-To: a digest speaks for many supporters, and carries no address of theirs."""

from __future__ import annotations

import datetime as dt
import secrets
from email.utils import format_datetime

from dispatcher.actions.model import Target
from dispatcher.channels.email.message import MessageBuilder, encode_body
from dispatcher.channels.email.transport import OutgoingMail
from dispatcher.letters.digest import DigestText
from dispatcher.mime import mailbox_header, unstructured


def _part(text: str, language: str, description: str = "") -> bytes:
    cte, body = encode_body(text)
    head = [
        'Content-Type: text/plain; charset="utf-8"\r\n',
        f"Content-Transfer-Encoding: {cte}\r\n",
        f"Content-Language: {language}\r\n",
        "Content-Disposition: inline\r\n",
        unstructured("Content-Description", description) if description else "",
        "\r\n",
    ]
    return "".join(head).encode("ascii") + body


def build(
    builder: MessageBuilder,
    target: Target,
    copies: list[Target],
    message_id: str,
    digest: DigestText,
    now: dt.datetime,
) -> OutgoingMail:
    assert target.email is not None
    boundary = f"=_digest_{secrets.token_hex(12)}"
    cc = [(c.name, c.email) for c in copies if c.email]
    head = [
        f"Message-ID: {message_id}\r\n",
        f"Date: {format_datetime(now.astimezone(dt.UTC).replace(microsecond=0))}\r\n",
        mailbox_header("From", [(builder.org_name, builder.org_address)]),
        mailbox_header("To", [(target.name, target.email)]),
        mailbox_header("Cc", cc) if cc else "",
        unstructured("Subject", digest.subject),
        "MIME-Version: 1.0\r\n",
        f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n',
        f"Content-Language: {digest.language}\r\n",
        "\r\n",
    ]
    parts = [_part(digest.intro, digest.language)]
    parts += [
        _part(f"{heading}\n\n{letter.body}\n", letter.language, heading) for heading, letter in digest.letters
    ]
    sep = f"\r\n--{boundary}\r\n".encode("ascii")
    data = "".join(head).encode("ascii") + sep + sep.join(parts) + f"\r\n--{boundary}--\r\n".encode("ascii")
    return OutgoingMail(
        sender=builder.org_address,
        recipients=(target.email, *(address for _, address in cc)),
        data=data,
    )
