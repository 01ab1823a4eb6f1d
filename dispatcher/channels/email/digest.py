"""A digest as the bytes of one MIME message: multipart/mixed, the opening as the first text
part, then each letter as an inline text part of its own (so a mail client shows them in order
and a clerk can forward one). The Message-ID is the one the store decided for the digest; there
is no Reply-To: a digest speaks for many supporters, and carries no address of theirs."""

from __future__ import annotations

import datetime as dt
import secrets

from dispatcher.actions.model import Target
from dispatcher.channels.email.message import MessageBuilder, encode_body, text_headers
from dispatcher.channels.email.transport import OutgoingMail
from dispatcher.letters.digest import DigestText
from dispatcher.mime import unstructured


def _part(text: str, language: str, description: str = "") -> bytes:
    cte, body = encode_body(text)
    head = [
        text_headers(cte, language),
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
    boundary = f"=_digest_{secrets.token_hex(12)}"
    head = builder.head(message_id, now, builder.org_name, [], target, copies, digest.subject)
    head += [
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
    return builder.mail(target, copies, data)
