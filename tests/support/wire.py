"""What an official's server received, read for supporters' addresses: none may travel to an
official except a letter's own supporter's, as its Reply-To, when they chose direct replies."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from sqlalchemy import create_engine, select

from dispatcher.store.schema import deliveries, supporters
from tests.support.smtp_server import Received

REPLY_TO = re.compile(r"(?im)^reply-to:[^\r\n]*(\r\n[ \t][^\r\n]*)*")
DELIVERY_ID = re.compile(r"^<[0-9a-f]+\.(\d+)@")  # message_id(): <digest.delivery id@domain>


def in_text(mail: Received, addresses: Iterable[str], body: str | None = None) -> list[str]:
    """The ``addresses`` found in the message's header (its Reply-To aside: see ``strangers``)
    or its text (``body``: already decoded, else every text part of the message, decoded)."""
    head = REPLY_TO.sub("", mail.data.partition(b"\r\n\r\n")[0].decode("ascii", "replace"))
    if body is None:
        parts = mail.message().walk()
        body = "\n".join(str(p.get_content()) for p in parts if p.get_content_maintype() == "text")
    text = (head + "\n" + body).lower()
    return [a for a in addresses if a.lower() in text]


def signers(db_url: str) -> dict[int, str]:
    """Each delivery's supporter address (lower case), by delivery id, as the store has it."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            query = select(deliveries.c.id, supporters.c.email).join(
                supporters, supporters.c.id == deliveries.c.supporter_id
            )
            return {r.id: r.email.lower() for r in conn.execute(query)}
    finally:
        engine.dispose()


def strangers(received: Iterable[Received], signed: Mapping[int, str], direct: bool) -> list[str]:
    """Supporters' addresses in messages to officials where they do not belong: any in a header
    or the text, and a Reply-To other than the letter's own supporter's (who chose ``direct``
    replies, else none at all). ``signed``: ``signers``."""
    everyone = sorted(set(signed.values()))
    found: list[str] = []
    for mail in received:
        match = DELIVERY_ID.match(mail.message_id or "")
        own = signed.get(int(match.group(1))) if match else None
        found += [f"#{mail.number}: {a}" for a in in_text(mail, everyone)]
        reply_to = (mail.reply_to or "").lower()
        if reply_to in signed.values() and (not direct or reply_to != own):
            found.append(f"#{mail.number}: Reply-To {reply_to}")
    return found
