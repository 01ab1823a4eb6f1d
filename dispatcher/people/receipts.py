"""Receipts: a periodic email to each supporter who asked for one, listing the letters sent in
their name (target, action, channel, date), in their language, with the one-click revoke link.

When: a weekly digest covers Monday to Sunday and a monthly one a calendar month (UTC, the only
zone every supporter shares). Each goes out from 06:00 UTC on the day after its period: a fax
provider's report can arrive after the fax went through and carries that earlier time, so a
period is only reported once such late reports have had time to land. A period in which nothing
was sent produces no email but is marked done all the same.

Who: supporters whose ``receipts`` is weekly or monthly and who still hold a live consent (not
revoked, not replaced). Someone who followed the revoke link, or whose mail client did so from
``List-Unsubscribe``, has said stop: they get nothing more, receipts included. Forgotten
supporters have no address.

Never twice: each digest is claimed in the store before it is written (see store/privacy.py), and
its watermark (``supporters.receipts_through``) moves only once the transport took the email.
A runner that dies in between leaves a claim that expires, and the digest goes out later.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from babel import Locale
from babel.dates import format_date

from dispatcher.actions.model import Action
from dispatcher.channels import SendError, Unavailable
from dispatcher.language import parse_language
from dispatcher.letters.texts import ENGLISH, RECEIPT, Texts, language_for, ngettext, texts
from dispatcher.people import tokens
from dispatcher.people.notices import Notice, opened
from dispatcher.settings import Settings
from dispatcher.store import Store
from dispatcher.store.privacy import Recipient, SentLetter

log = logging.getLogger("dispatcher")

EVERY = 300.0  # seconds between runs in a running dispatcher
BATCH = 50  # digests per run: one run never holds the store thread long
SETTLE = dt.timedelta(hours=6)  # how long after its period a digest waits for late fax reports
# A claim outlives a whole run of slow sends (so no one takes a digest still being sent); a dead
# runner's expires, and its digests go out an hour late.
LEASE = dt.timedelta(hours=1)
RETRY_AFTER = dt.timedelta(hours=1)  # after the transport refused a digest
MAX_LINES = 100  # letters listed in one email; the rest are counted
KINDS = ("weekly", "monthly")

T = TypeVar("T")


class Call(Protocol):
    """How store calls are made from asyncio code (the dispatcher's store thread, or any)."""

    def __call__(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Awaitable[T]: ...


async def in_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


def texts_for(tag: str) -> tuple[str, Locale]:
    """The texts' language and the locale dates are written in: the supporter's own (de-CH,
    es-MX…) when the catalogue has receipts in its language and script, else English (Traditional
    Chinese readers too: not a script they did not choose)."""
    language = language_for(tag, RECEIPT)
    return (language, parse_language(tag)) if language else (ENGLISH, Locale(ENGLISH))


def period_end(kind: str, now: dt.datetime) -> dt.datetime:
    """The end of the latest period of this kind that may be reported at ``now``."""
    settled = now.astimezone(dt.UTC) - SETTLE
    day = settled.replace(hour=0, minute=0, second=0, microsecond=0)
    if kind == "weekly":
        return day - dt.timedelta(days=day.weekday())
    return day.replace(day=1)


def _names(actions: Mapping[str, Action], letter: SentLetter) -> tuple[str, str]:
    """The action's title and the target's name; their ids if the file is gone since."""
    action = actions.get(letter.action_id)
    if action is None:
        return letter.action_id, letter.target_id
    try:
        return action.title, action.target(letter.target_id).name
    except KeyError:
        return action.title, letter.target_id


@dataclass(frozen=True)
class Digest:
    person: Recipient
    letters: list[SentLetter]
    total: int  # letters in the period, listed or not
    end: dt.datetime


def _intro(t: Texts, locale: Locale, start: dt.datetime | None, end: dt.datetime) -> str:
    """The period reported: its first and last days (``end`` is the midnight after it)."""
    last = format_date((end - dt.timedelta(days=1)).date(), "long", locale=locale)
    if start is None:
        return t["so_far"].format(end=last)
    return t["period"].format(start=format_date(start.date(), "long", locale=locale), end=last)


def _line(t: Texts, locale: Locale, actions: Mapping[str, Action], letter: SentLetter) -> str:
    action, target = _names(actions, letter)
    day = format_date(letter.sent_at.date(), "medium", locale=locale)
    channel = t.get(f"channel_{letter.channel}", letter.channel)
    return t["line"].format(date=day, action=action, target=target, channel=channel)


def compose(digest: Digest, actions: Mapping[str, Action], link: str) -> Notice:
    """The email, as plain text: names and titles are inserted as they are, never as markup."""
    person = digest.person
    key, locale = texts_for(person.language)
    t = texts(key, RECEIPT)
    lines = [_line(t, locale, actions, letter) for letter in digest.letters]
    if (more := digest.total - len(digest.letters)) > 0:
        lines.append(ngettext(key, RECEIPT, "more", more).format(count=more))
    intro = _intro(t, locale, person.through, digest.end)
    greeting, revoke = t["greeting"].format(name=person.name), f"{t['revoke']}\n{link}"
    parts = [greeting, intro, "\n".join(lines), revoke, t["why"]]
    return Notice(person.name, person.email, key, t["subject"], "\n\n".join(parts) + "\n", link)


@dataclass(frozen=True)
class _Draft:
    person: Recipient
    token: str
    end: dt.datetime
    notice: Notice


async def send_receipts(
    settings: Settings,
    store: Store,
    actions: Mapping[str, Action],
    now: dt.datetime,
    worker: str,
    call: Call = in_thread,
    limit: int = BATCH,
) -> int:
    """One bounded run: the digests due now, up to ``limit`` of them. Returns how many went out.
    Needs ``settings.public_url`` (the revoke link)."""
    assert settings.public_url is not None
    privacy, public_url = store.privacy, settings.public_url
    ends = {kind: period_end(kind, now) for kind in KINDS}
    secret = await call(store.instance_secret)
    drafts = []
    for person in await call(privacy.receipts_due, ends, now, limit):
        token = await call(privacy.claim_receipt, person, worker, now, LEASE)
        if token is None:
            continue  # another runner has it
        end = ends[person.receipts]
        letters, total = await call(privacy.letters_sent, person.id, person.through, end, MAX_LINES)
        if not total:
            await call(privacy.finish_receipt, person, token, end)  # nothing to tell: period done
            continue
        notice = compose(
            Digest(person, letters, total, end),
            actions,
            tokens.revoke_link(public_url, secret, person.email, texts_for(person.language)[0]),
        )
        drafts.append(_Draft(person, token, end, notice))
    return await _deliver(settings, store, drafts, now, call) if drafts else 0


async def _deliver(
    settings: Settings, store: Store, drafts: list[_Draft], now: dt.datetime, call: Call
) -> int:
    sent = 0
    async with opened(settings) as send_one:
        for draft in drafts:
            try:
                await send_one(draft.notice, now)
            except (SendError, Unavailable, OSError) as exc:
                # By id and reply code only: a server's reply can quote the address, and the log
                # is no place for supporters' addresses.
                code = getattr(exc, "code", None)
                what = f"{type(exc).__name__} {code or ''}".strip()
                log.warning(
                    "receipt to supporter %d not sent (%s); tried again in an hour", draft.person.id, what
                )
                await call(store.privacy.hold_receipt, draft.person, draft.token, now + RETRY_AFTER)
                continue
            await call(store.privacy.finish_receipt, draft.person, draft.token, draft.end)
            sent += 1
    return sent


class ReceiptsJob:
    """The dispatcher's periodic run; without a public URL there is no revoke link to give, so
    nothing is sent (said once)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        call: Call,
        worker: str,
        clock: Callable[[], dt.datetime],
        actions: Callable[[], Mapping[str, Action]],
    ) -> None:
        self.settings, self.store, self.call, self.worker = settings, store, call, worker
        self.clock, self.actions = clock, actions
        self._warned = False

    async def run(self) -> int:
        if not self.settings.public_url:
            if not self._warned:
                log.warning(
                    "receipts are not sent: without DISPATCHER_PUBLIC_URL they could carry no revoke link"
                )
                self._warned = True
            return 0
        sent = await send_receipts(
            self.settings, self.store, self.actions(), self.clock(), self.worker, self.call
        )
        if sent:
            log.info("receipts: %d digests sent", sent)
        return sent
