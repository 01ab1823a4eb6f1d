"""The vocabulary: statuses, ids and records that every layer speaks, from the store up.

It imports nothing of ours, so that any module may import it: the store's records, the staff
statuses of an action and the widths of a supporter's fields.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class ActionStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    PAUSED = "paused"
    CLOSED = "closed"


class Status(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    # Taken by a fax provider, which reports the outcome later; no lease is held meanwhile, so
    # no worker takes the delivery over and faxes it again while the provider works.
    SUBMITTED = "submitted"


class Outcome(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    # A lease ran out while the attempt was in flight (crash, kill -9): the outcome is unknown and
    # the delivery is sent again with the same Message-ID.
    INTERRUPTED = "interrupted"
    SUBMITTED = "submitted"  # a fax provider accepted the job; its outcome is a later row


@dataclass(frozen=True)
class ActionState:
    action_id: str
    status: str | None
    deadline: dt.datetime | None
    updated_at: dt.datetime
    updated_by: str


@dataclass(frozen=True)
class Terms:
    """What a consent allows besides its scope. A supporter's consent covers an action when its
    scope is "all", one of the action's tags ("tag:<tag>") or the action's id."""

    channels: tuple[str, ...] = ()  # empty: every channel
    languages: tuple[str, ...] = ()  # the letters' languages they sign; empty: any
    name_display: str = "full"  # "full": name, city and country; "name": the name alone
    # Where a target's reply goes: "organisation" (the From address, no Reply-To) or "direct"
    # (the supporter's address as Reply-To, in the hands of the government written to).
    replies: str = "organisation"
    monthly_cap: int | None = None  # letters per calendar month (UTC), across all actions
    expires_at: dt.datetime | None = None
    text_version: str = ""  # the version of the consent text they agreed to


@dataclass(frozen=True)
class SupporterRecord:
    """A supporter and the consent they gave: when (``opted_in_at``), how (``source``: import,
    form, api), and, once confirmed (``confirmed_at``; imports and the API vouch for it), for what."""

    email: str
    name: str
    language: str
    city: str
    country: str
    scopes: tuple[str, ...]
    opted_in_at: dt.datetime
    source: str = "import"
    terms: Terms = Terms()
    confirmed_at: dt.datetime | None = None  # None: as opted_in_at
    receipts: str | None = None  # "off", "weekly", "monthly"; None: leave as it was
    words: Mapping[str, str] = field(default_factory=dict)  # action id → their own paragraph


@dataclass(frozen=True)
class Signer:
    """The supporter as the renderer and channels see them: only what a letter needs."""

    name: str
    email: str
    city: str
    country: str
    language: str
    words: str = ""  # their own paragraph for this action, as plain text
    replies: str = "organisation"  # "direct": their address is the letter's Reply-To


GroupId = tuple[str, str, str]  # action id, target id, channel


# When to try a delivery again after this many attempts, at this time; None: give up.
Retry = Callable[[int, dt.datetime], dt.datetime | None]


@dataclass(frozen=True)
class Caps:
    """Most letters each recipient address of a group (its ``keys``) may receive in one clock
    hour (UTC) and one day (midnight to midnight in ``zone``, the recipient's), and each email
    domain in one clock hour, across every worker; None: no cap. Officials' filters quarantine
    volume: these hold what the delivery plan allows."""

    per_hour: int | None = None
    per_day: int | None = None
    domain_per_hour: int | None = None
    zone: str = "UTC"


@dataclass(frozen=True)
class ClaimGroup:
    """Deliveries of one action × target × channel, and the pacing buckets a letter spends."""

    action_id: str
    target_id: str
    channel: str
    keys: tuple[str, ...]
    line: str | None = None  # carries one letter at a time: none while one is in flight
    caps: Caps = Caps()
    # Letters per second spread to the deadline (plans/spread.py), held by the bucket ``spread``
    # names; None: no spread (``spread: asap``, or no sending time left), as the caps allow.
    pace: float | None = None

    @property
    def ident(self) -> GroupId:
        return (self.action_id, self.target_id, self.channel)

    @property
    def spread(self) -> str | None:
        """The group's spread bucket, or None without a pace."""
        if self.pace is None:
            return None
        return f"spread:{self.action_id}/{self.target_id}/{self.channel}"


@dataclass(frozen=True)
class ClaimBatch:
    claims: list[Claim]
    dry: frozenset[GroupId]  # asked for letters and had fewer due: nothing more there for now
    wait: float | None  # seconds until a group that still has letters may claim again
    # Groups at one of their caps (``Caps``), and when the last of those caps' windows ends, or
    # waiting for their spread's next token (``ClaimGroup.spread``), and when it comes: not
    # worth asking before then.
    capped: Mapping[GroupId, dt.datetime] = field(default_factory=dict)
    # How many of the groups asked, from the first, the round looked at (``store.claims.window``):
    # the others were neither served nor found dry, and are asked first next round.
    reached: int = 0


@dataclass(frozen=True)
class Claim:
    delivery_id: int
    action_id: str
    target_id: str
    channel: str
    attempt: int
    signer: Signer


@dataclass(frozen=True)
class Submission:
    """A fax a provider accepted: its job id, the number it dials, the pages it carries."""

    provider: str
    job_id: str
    destination: str  # E.164
    pages: int


@dataclass(frozen=True)
class ProviderEvent:
    """A provider's final word on one job, from a verified webhook or from polling."""

    provider: str
    job_id: str
    delivered: bool
    at: dt.datetime
    reason: str = ""
    failure: str | None = None  # busy, no answer, not a fax line… (see the fax channel)
    retry_at: dt.datetime | None = None  # a failure worth retrying: when; None: final
    pages: int | None = None
    duration: float | None = None  # seconds on the line


class Resolution(StrEnum):
    APPLIED = "applied"
    EARLY = "early"  # before its submission was committed: kept, applied when it lands
    IGNORED = "ignored"  # a duplicate, or about a job since resubmitted


@dataclass(frozen=True)
class AttemptResult:
    delivery_id: int
    action_id: str
    target_id: str
    channel: str
    started_at: dt.datetime
    finished_at: dt.datetime
    outcome: Outcome
    code: int | None = None
    detail: str = ""
    language: str | None = None
    next_attempt_at: dt.datetime | None = None
    submission: Submission | None = None  # with outcome SUBMITTED


@dataclass(frozen=True)
class AttemptRow:
    id: int
    delivery_id: int
    action_id: str
    target_id: str
    channel: str
    started_at: dt.datetime
    finished_at: dt.datetime
    outcome: str
    code: int | None
    detail: str
    worker: str
    provider: str | None = None
    job_id: str | None = None
    destination: str | None = None
    pages: int | None = None
    duration: float | None = None


@dataclass(frozen=True)
class Backlog:
    """Pending deliveries: due now (held, paused or on a channel that is down), or later."""

    due_now: int
    later: int
    next_at: dt.datetime | None
    opens: dt.datetime | None = None  # when the first target office shut now opens

    def line(self) -> str:
        if not self.due_now and not self.later:
            return "nothing left pending"
        parts = []
        if self.later:
            parts.append(f"{self.later} wait for a retry, the first at {self.next_at:%Y-%m-%d %H:%M:%S} UTC")
        if self.due_now:
            parts.append(
                f"{self.due_now} due but held, paused, over a cap, waiting for the spread to the deadline,"
                " outside office hours or on a channel that is down"
            )
        if self.due_now and self.opens:
            parts.append(f"the first office shut now opens at {self.opens:%Y-%m-%d %H:%M} UTC")
        return "left pending: " + "; ".join(parts)


@dataclass(frozen=True)
class SentCount:
    action_id: str
    target_id: str
    channel: str
    letters: int


# A worker not heard from this long is forgotten: killed (-9, OOM, a reboot) it never says it
# stopped, and a restart gets a new id (hostname:pid), so it would stay listed as silent for ever.
WORKERS_KEPT = dt.timedelta(hours=1)


# A worker that beat this recently is running (it beats every 5 s from a task of its own): its
# leases are not taken back. Two beats: one may be late behind a slow commit; two missed, it is
# gone (killed, frozen). Short enough that a frozen worker's letters go back within seconds of
# its lease.
ALIVE = dt.timedelta(seconds=10)


@dataclass(frozen=True)
class WorkerBeat:
    """A dispatcher's last word: alive until ``last_seen`` goes stale, or stopped cleanly."""

    worker_id: str
    started_at: dt.datetime
    last_seen: dt.datetime
    holding: int  # letters leased or queued in it
    sent: int  # letters it sent since it started
    stopped_at: dt.datetime | None


class HoldKind(StrEnum):
    """Why a dispatcher holds an action: the words stored in ``action_holds.kind``."""

    CHECK = "check"  # its letters fail the check before sending, or the fax font is missing
    SENDING = "sending"  # a real signer's letter failed to render while sending


@dataclass(frozen=True)
class ActionHold:
    """An action a dispatcher holds (nothing of it is sent), kept where every process sees it.

    ``kind`` is a ``HoldKind``: "check" (its letters fail the check before sending, or the fax
    font is missing on the worker's host) or "sending" (a real signer's letter failed to
    render). Either lasts while ``templates``, the stamp of the action's template folder, is the
    folder's stamp now.
    Each worker stores its own; staff release them all (``dispatcher release``)."""

    action_id: str
    kind: str
    reason: str
    held_at: dt.datetime
    worker: str
    templates: str


def released_before(hold: ActionHold, released: Mapping[str, dt.datetime]) -> bool:
    """A hold taken while sending that staff released afterwards: it no longer holds anything."""
    at = released.get(hold.action_id)
    return hold.kind == HoldKind.SENDING and at is not None and hold.held_at <= at


@dataclass(frozen=True)
class QueueCount:
    action_id: str
    target_id: str
    channel: str
    status: str
    count: int
    oldest_due: dt.datetime | None


Progress = Callable[[int, int], None]


# The widths of a supporter's own fields (imports, forms and sample signers keep to them).
NAME_LIMIT = 200  # characters, as the database columns (store/schema.py)
CITY_LIMIT = 200
WORDS_LIMIT = 600  # a supporter's own paragraph: a few sentences, not a second letter
