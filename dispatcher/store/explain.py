"""One explanation of a letter's state: why it went out, or has not yet, or never will.

The store knows the letter, its consent, its attempts, its lease, the pacing buckets, the caps'
counts and the fax line; what only the layers above know (the action's effective status, whether
the catalogue holds it, the letter's pacing keys, caps and Message-ID) comes in a ``Context``.
``dispatcher why`` and the dashboard's delivery page both print what ``explain`` returns.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, and_, select

from dispatcher.models import Caps
from dispatcher.pacing import GLOBAL, Limits, refilled
from dispatcher.plans.spread import Aim
from dispatcher.redaction import person_pattern, redacted
from dispatcher.store import ALIVE, AttemptRow, Status, WorkerBeat, caps, consent
from dispatcher.store.reasons import Reason, last_reply
from dispatcher.store.schema import attempts, consents, deliveries, pacing_buckets, supporters

RECENT = 5  # attempts shown, newest first
ROW_FIELDS = [f.name for f in fields(AttemptRow)]
EXACT = re.compile(r"(\d{4}-\d\d-\d\d) \d\d:\d\d:\d\d UTC")  # as at() writes it


class State(StrEnum):
    """A letter's state in one phrase: the first word of the answer."""

    DUE = "due now"
    LATER = "due later"
    RETRY = "waiting for a retry"
    CAP = "waiting for the monthly cap"
    PACING = "waiting for pacing"
    CAPPED = "waiting for a cap"  # its recipient's or domain's hourly or daily cap
    SPREAD = "waiting for the spread"  # its target's letters spread to the deadline
    LINE = "waiting for the fax line"
    OFFICE = "outside office hours"
    DIGEST = "waiting for the digest"  # its target takes one message a day (delivery: digest)
    LEASE = "waiting for its lease to run out"
    HELD = "held"
    DRAFT = "draft"
    CONSENT = "stopped by its consent"
    PAUSED = "paused"
    CLOSED = "closed"
    SENDING = "sending"
    SUBMITTED = "submitted"
    SENT = "sent"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Context:
    """What the layers above the store know of the letter's action."""

    status: str = "active"  # the action's effective status (draft, active, paused, closed)
    why: str = ""  # and what made it so: "by alice", "deadline passed"
    held: str | None = None  # why the catalogue holds the action; None: not held
    keys: tuple[str, ...] = ()  # the pacing buckets one letter spends (GLOBAL is added)
    line: str | None = None  # a line that carries one letter at a time (a fax number)
    limits: Limits | None = None
    message_id: str | None = None
    # The dispatchers' last heartbeats, and the ids of those running; None: not looked at.
    workers: tuple[WorkerBeat, ...] | None = None
    running: tuple[str, ...] = ()
    control: str = ""  # staff's last control of the action: "set active by alice at ..."
    caps: Caps = field(default_factory=Caps)  # its recipients' caps (store/caps.py); none by default
    opens: str | None = None  # outside the target's office hours: when they open, local time
    spread: Aim | None = None  # its target's letters spread to the deadline; None: as caps allow
    digest: str | None = None  # its target's letters go as a daily digest: which, and when


@dataclass(frozen=True)
class Explanation:
    delivery_id: int
    action_id: str
    target_id: str
    channel: str
    status: str
    state: State
    summary: str
    details: tuple[str, ...]
    supporter: str | None  # their email; None: hidden from this reader, or forgotten
    attempts: tuple[AttemptRow, ...]

    def lines(self) -> list[str]:
        head = f"delivery {self.delivery_id}: {self.action_id} → {self.target_id} by {self.channel}"
        who = [f"supporter: {self.supporter}"] if self.supporter else []
        return [head, f"{self.state}: {self.summary}", *who, *self.details]


def at(when: dt.datetime | None) -> str:
    return f"{when:%Y-%m-%d %H:%M:%S} UTC" if when else "-"


def explain(
    conn: Connection, delivery_id: int, now: dt.datetime, context: Context, *, redact: bool = False
) -> Explanation | None:
    row = _letter(conn, delivery_id)
    if row is None:
        return None
    pattern = _pattern(row) if redact else None
    state, summary = _state(conn, row, now, context)
    tried = tuple(_attempts(conn, delivery_id))
    details = (*(_shared_consent(row, now) if redact else _consent(row)), *_facts(conn, row, context))
    return Explanation(
        delivery_id,
        row.action_id,
        row.target_id,
        row.channel,
        row.status,
        state,
        _to_the_day(redacted(summary, pattern)) if redact else summary,
        tuple(_to_the_day(redacted(d, pattern)) if redact else d for d in details),
        None if redact or row.supporter_id is None else row.email,
        tuple(_redacted(a, pattern) for a in tried) if redact else tried,
    )


def _letter(conn: Connection, delivery_id: int) -> Any:
    d, c, s = deliveries, consents, supporters
    query = (
        select(
            d,
            c.c.scope,
            c.c.source,
            c.c.opted_in_at,
            c.c.confirmed_at,
            c.c.revoked_at,
            c.c.ended_at,
            c.c.expires_at,
            c.c.channels.label("consent_channels"),
            c.c.monthly_cap,
            s.c.email,
            s.c.name,
            s.c.city,
        )
        .outerjoin(c, c.c.id == d.c.consent_id)
        .outerjoin(s, s.c.id == d.c.supporter_id)
        .where(d.c.id == delivery_id)
    )
    return conn.execute(query).one_or_none()


def _pattern(row: Any) -> re.Pattern[str] | None:
    return person_pattern(row.email, row.name, row.city) if row.email else None


def _redacted(row: AttemptRow, pattern: re.Pattern[str] | None) -> AttemptRow:
    return replace(row, detail=redacted(row.detail, pattern))


def _attempts(conn: Connection, delivery_id: int) -> list[AttemptRow]:
    a = attempts
    query = select(*(a.c[f] for f in ROW_FIELDS)).where(a.c.delivery_id == delivery_id)
    return [AttemptRow(**r._mapping) for r in conn.execute(query.order_by(a.c.id.desc()).limit(RECENT))]


def _state(conn: Connection, row: Any, now: dt.datetime, context: Context) -> tuple[State, str]:
    if row.status == Status.PENDING:
        return _pending(conn, row, now, context)
    if row.status == Status.SENDING:
        return _sending(row, now, context)
    if row.status == Status.SUBMITTED:
        return State.SUBMITTED, (
            f"{row.provider} took it as job {row.provider_job} at {at(row.submitted_at)}; "
            "waiting for the provider's word"
        )
    return _final(row, context)


def _sending(row: Any, now: dt.datetime, context: Context) -> tuple[State, str]:
    again = "the next claim logs the attempt as interrupted and sends it again, with the same Message-ID"
    if row.lease_until is not None and row.lease_until < now:
        ran_out = f"{row.lease_owner}'s lease ran out at {at(row.lease_until)}"
        if _beating(row.lease_owner, now, context):  # no claim takes it from a worker that runs
            return State.SENDING, (
                f"{ran_out}, but {row.lease_owner} is still heard from: it renews the lease or "
                "gives the letter back; should it fall silent, the next claim sends it again"
            )
        return State.LEASE, f"{ran_out}: {again}"
    gone = _gone(row.lease_owner, context)
    if gone is not None:  # nobody renews the lease: it runs out, then another worker sends it
        return (
            State.LEASE,
            f"{row.lease_owner} {gone}; its lease runs out at {at(row.lease_until)}, then {again}",
        )
    return State.SENDING, f"{row.lease_owner} is sending it, leased until {at(row.lease_until)}"


def _beating(owner: str, now: dt.datetime, context: Context) -> bool:
    """The owner beat within ALIVE and has not stopped: what the store's ``recover`` spares."""
    beats = (w for w in context.workers or () if w.worker_id == owner)
    return any(w.stopped_at is None and now - w.last_seen <= ALIVE for w in beats)


def _gone(owner: str, context: Context) -> str | None:
    """How the lease's owner stopped being heard from, or None: it runs, or nobody knows (no
    beat of it kept: forgotten long ago, or its first beat still on its way)."""
    beat = next((w for w in context.workers or () if w.worker_id == owner), None)
    if beat is None or owner in context.running:
        return None
    if beat.stopped_at is not None:
        return f"stopped at {at(beat.stopped_at)} without giving it back"
    return f"has not been heard from since {at(beat.last_seen)}"


def _final(row: Any, context: Context) -> tuple[State, str]:
    if row.status == Status.SENT:
        return State.SENT, f"sent at {at(row.sent_at)} after {row.attempts} attempt(s)"
    if row.status == Status.FAILED:
        return (
            State.FAILED,
            f"failed at {at(row.updated_at)} after {row.attempts} attempt(s): {_failure(row.last_error)}",
        )
    if row.status == Status.EXPIRED:
        return State.EXPIRED, f"the action's deadline passed before it was sent ({at(row.updated_at)})"
    reason = Reason.of(row.last_error)
    why = reason.cancellation() if reason else "cancelled: the action was closed (its file says closed)"
    if reason is Reason.CLOSED_BY_STAFF and context.status == "closed" and context.why:
        why = f"{why} ({context.why})"  # who closed it
    return State.CANCELLED, f"{why} ({at(row.updated_at)})"


def _failure(text: str | None) -> str:
    if Reason.of(text) is Reason.GAVE_UP:
        return f"its retries ran out; the last reply: {last_reply(text or '')}"
    return str(text)


def _pending(conn: Connection, row: Any, now: dt.datetime, context: Context) -> tuple[State, str]:
    # What staff must change first: a closed action stays closed whatever its templates say.
    if context.status == "unknown":  # no action file to send it by
        return State.HELD, f"nothing of this action is sent: {context.held or context.why}"
    lapsed = _lapsed(row, now)
    if lapsed is not None:  # nothing staff do sends it now
        return State.CONSENT, (
            f"the consent it was planned under {lapsed}: no claim takes it, and the consent sweep cancels it"
        )
    if context.status == "draft":
        return State.DRAFT, "its file says draft: the letter is sent once it says active"
    if context.status not in ("active", "paused"):
        return State.CLOSED, f"the action is {context.status}{_by(context)}: the letter will not be sent"
    if context.status == "paused":
        return State.PAUSED, f"the action is paused{_by(context)}: nothing of it is sent"
    if context.held is not None:
        return State.HELD, f"nothing of this action is sent: {context.held}"
    if context.digest is not None:
        return State.DIGEST, context.digest
    if row.next_attempt_at > now:
        return _later(row)
    if context.opens is not None:
        return State.OFFICE, f"outside office hours until {context.opens}"
    if context.line and (busy := _line_busy(conn, row)) is not None:
        return State.LINE, f"delivery {busy} to the same fax line is in flight: one call at a time"
    full = caps.reached(conn, context.keys, context.caps, now)
    if full:
        return State.CAPPED, caps.said(full[0], now)
    spread = _spread(conn, now, context.spread)
    if spread is not None:
        return State.SPREAD, spread
    paced = _pacing(conn, now, context)
    if paced is not None:
        wait, key = paced
        whose = "the deployment's pace (rate_global)" if key == GLOBAL else "the recipient's pacing"
        return State.PACING, f"{whose} allows the next letter in {wait:.0f} s"
    return State.DUE, f"due since {at(row.next_attempt_at)}: {_taker(context)}"


def _taker(context: Context) -> str:
    if context.workers is None:
        return "a running dispatcher takes it at its next claim"
    if context.running:
        return f"{', '.join(context.running)} takes it at its next claim"
    last = max(context.workers, key=lambda w: w.last_seen, default=None)
    heard = f" (the last, {last.worker_id}, was heard from at {at(last.last_seen)})" if last else ""
    return f"no dispatcher is running to take it{heard}: start `dispatcher run`"


def _lapsed(row: Any, now: dt.datetime) -> str | None:
    """How the letter's consent stopped allowing it, or None: it allows it (or none is left:
    the letter was planned before retention removed it)."""
    if row.revoked_at is not None:
        return f"was withdrawn at {at(row.revoked_at)}"
    if row.ended_at is not None:
        return f"ended at {at(row.ended_at)}"
    if row.expires_at is not None and row.expires_at <= now:
        return f"expired at {at(row.expires_at)}"
    return None


def _by(context: Context) -> str:
    return f" ({context.why})" if context.why else ""


def _later(row: Any) -> tuple[State, str]:
    if Reason.of(row.last_error) is Reason.MONTHLY_CAP:
        return State.CAP, f"{row.last_error}; looked at again at {at(row.next_attempt_at)}"
    if row.attempts:
        return (
            State.RETRY,
            f"attempt {row.attempts} failed{_said(row)}; tried again at {at(row.next_attempt_at)}",
        )
    return State.LATER, f"due at {at(row.next_attempt_at)}"


def _said(row: Any) -> str:
    return f" ({row.last_error})" if row.last_error else ""


def _line_busy(conn: Connection, row: Any) -> int | None:
    d = deliveries
    mine = and_(d.c.action_id == row.action_id, d.c.target_id == row.target_id, d.c.channel == row.channel)
    flying = and_(mine, d.c.status.in_([Status.SENDING, Status.SUBMITTED]), d.c.id != row.id)
    found = conn.execute(select(d.c.id).where(flying).limit(1)).scalar()
    return None if found is None else int(found)


def _pacing(conn: Connection, now: dt.datetime, context: Context) -> tuple[float, str] | None:
    """Seconds until every bucket the letter spends has a token again, and the bucket that takes
    longest, or None: each has one."""
    if context.limits is None:
        return None
    p = pacing_buckets
    keys = (GLOBAL, *context.keys)
    waits = []
    for key, tokens, updated in conn.execute(
        select(p.c.key, p.c.tokens, p.c.updated_at).where(p.c.key.in_(keys))
    ):
        rate, burst = context.limits.of(key)
        have = refilled(tokens, updated, now, rate, burst)
        if have < 1 and rate > 0:
            waits.append(((1 - have) / rate, str(key)))
    return max(waits) if waits else None


def _spread(conn: Connection, now: dt.datetime, aim: Aim | None) -> str | None:
    """When the target's spread bucket has its next token, or None: it has one now."""
    if aim is None:
        return None
    p = pacing_buckets
    row = conn.execute(select(p.c.tokens, p.c.updated_at).where(p.c.key == aim.key)).first()
    have = 1.0 if row is None else refilled(row.tokens, row.updated_at, now, aim.pace, 1.0)
    if have >= 1:
        return None
    return aim.said(now + dt.timedelta(seconds=(1 - have) / aim.pace))


def _consent(row: Any) -> list[str]:
    if row.consent_id is None or row.scope is None:
        return ["consent: none left (forgotten, or removed by retention)"]
    lines = [
        f"planned at {at(row.created_at)} under consent #{row.consent_id}: scope {row.scope}, "
        f"from {row.source}, opted in {at(row.opted_in_at)}, "
        f"confirmed {at(row.confirmed_at or row.opted_in_at)}"
    ]
    if row.consent_channels != "*":
        lines.append(f"consent allows only: {row.consent_channels}")
    if row.monthly_cap is not None:
        lines.append(f"consent caps letters at {row.monthly_cap} a month")
    for label, when in (("revoked", row.revoked_at), ("ended", row.ended_at), ("expires", row.expires_at)):
        if when is not None:
            lines.append(f"consent {label} at {at(when)}")
    return lines


def _shared_consent(row: Any, now: dt.datetime) -> list[str]:
    """The consent as every supporter's with the same scope and state reads: its number, source,
    cap, channels and times to the second would tie a supporter's letters together."""
    if row.consent_id is None or row.scope is None:
        return ["consent: none left (forgotten, or removed by retention)"]
    return [f"consent: scope {row.scope}, {consent.state(row.revoked_at, row.ended_at, row.expires_at, now)}"]


def _fallback(conn: Connection, row: Any) -> str | None:
    """A fax that falls back: still to come while it may fail, what came of it once it failed."""
    if row.status in (Status.PENDING, Status.SENDING, Status.SUBMITTED):
        return f"after its last failed attempt it goes by {row.fallback}"
    if row.status != Status.FAILED:
        return None
    d = deliveries
    same = (d.c.action_id == row.action_id, d.c.target_id == row.target_id, d.c.channel == row.fallback)
    found = conn.scalar(select(d.c.id).where(d.c.supporter_id == row.supporter_id, *same).limit(1))
    if found is None:
        return (
            f"no letter went on by {row.fallback}: the supporter's consent did not allow it, or they are gone"
        )
    return f"it went on by {row.fallback}: letter {found}"


def _to_the_day(text: str) -> str:
    """Times to the second are a fingerprint (a supporter's letters are planned together)."""
    return EXACT.sub(r"\1", text)


def _facts(conn: Connection, row: Any, context: Context) -> list[str]:
    out = [f"attempts: {row.attempts}"]
    if row.last_error and row.status != Status.FAILED:
        out.append(f"last error: {row.last_error}")
    if row.status == Status.SENT and context.message_id:
        out.append(f"Message-ID: {context.message_id}")
    if row.provider_job:
        out.append(f"fax job: {row.provider} {row.provider_job}")
    if row.fallback and (fallback := _fallback(conn, row)):
        out.append(fallback)
    if context.held is not None:
        out.append(f"its action is held: {context.held}")
    if context.control:
        out.append(f"its action was {context.control}")
    return out
