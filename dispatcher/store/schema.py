"""Tables of the SQL store (SQLAlchemy Core). Alembic migrations must match these."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeDecorator

# SQLite has no BIGINT autoincrement; PostgreSQL deserves 64-bit ids for an append-only log.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in Python; ``timestamptz`` on PostgreSQL, naive UTC text on SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if not isinstance(value, dt.datetime) or value.tzinfo is None:
            raise ValueError(f"naive or non-datetime value {value!r}: use aware UTC datetimes")
        utc: dt.datetime = value.astimezone(dt.UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# Runtime state that staff change while the dispatcher runs; the action files hold the rest.
action_state = Table(
    "action_state",
    metadata,
    Column("action_id", String(128), primary_key=True),
    Column("status", String(16)),
    Column("deadline", UTCDateTime()),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("updated_by", String(128), nullable=False),
)

supporters = Table(
    "supporters",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("language", String(35), nullable=False),
    Column("city", String(200), nullable=False, server_default=""),
    Column("country", String(2), nullable=False, server_default=""),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    # Receipts: a digest of the letters sent in their name ("off", "weekly", "monthly"), and up
    # to when the last one reported.
    Column("receipts", String(16), nullable=False, server_default="off"),
    Column("receipts_through", UTCDateTime()),
)

# One row per scope a supporter agreed to: "all", "tag:<campaign tag>" or an action id, with the
# terms of that mandate. Rows are only ever added: a change ends the old row (ended_at) and adds
# a new one, so the planner's watermark on ids sees every widening; revocation keeps the row.
# The partial unique index's condition, as migration 0006 made it; queries spell it consent.current.
LIVE_CONSENT = "revoked_at IS NULL AND ended_at IS NULL"
consents = Table(
    "consents",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("supporter_id", BigId, ForeignKey("supporters.id", ondelete="CASCADE"), nullable=False),
    Column("scope", String(128), nullable=False),
    Column("channels", String(64), nullable=False, server_default="*"),
    Column("source", String(32), nullable=False),
    Column("opted_in_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime()),
    # The letters' languages the supporter signs ("*": any), space-separated BCP 47 tags.
    Column("languages", String(200), nullable=False, server_default="*"),
    Column("name_display", String(16), nullable=False, server_default="full"),  # full | name
    Column("replies", String(16), nullable=False, server_default="organisation"),  # organisation | direct
    Column("monthly_cap", Integer),
    Column("expires_at", UTCDateTime()),
    Column("text_version", String(64), nullable=False, server_default=""),
    Column("confirmed_at", UTCDateTime()),
    Column("ended_at", UTCDateTime()),  # replaced by a later consent of the same scope
    Index(
        "uq_consents_live_scope",
        "supporter_id",
        "scope",
        unique=True,
        sqlite_where=text(LIVE_CONSENT),
        postgresql_where=text(LIVE_CONSENT),
    ),
    Index(None, "scope", "supporter_id"),
    Index(None, "supporter_id"),  # a supporter's consents: revoke, a change, export
    # Every running dispatcher asks each second who withdrew consent lately: no table scan.
    Index("ix_consents_revoked_at", "revoked_at"),
    Index(None, "expires_at"),  # the sweep cancels letters whose consent lapsed
    # Ids are never reused (SQLite reuses the highest after a delete, as forget does): the
    # planner's watermarks assume every new consent has an id above them.
    sqlite_autoincrement=True,
)

# Append-only history of each supporter's consent: granted, confirmed, changed, revoked.
consent_events = Table(
    "consent_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("supporter_id", BigId, ForeignKey("supporters.id", ondelete="CASCADE"), nullable=False),
    Column("consent_id", BigId, ForeignKey("consents.id", ondelete="SET NULL")),
    Column("at", UTCDateTime(), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("source", String(32), nullable=False),
    Column("detail", Text, nullable=False, server_default=""),
    Index(None, "supporter_id"),
)

# Opt-in forms waiting for their confirmation link: nothing about the person is kept elsewhere
# until it is followed, and the row is deleted once used or old.
opt_ins = Table(
    "opt_ins",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False),
    Column("payload", Text, nullable=False),  # the form, as JSON
    Column("created_at", UTCDateTime(), nullable=False),
    Column("confirmed_at", UTCDateTime()),
    Index(None, "email", "created_at"),
    Index(None, "created_at"),
    # A confirmation link names its form's id: an id reused after a delete would let an old link
    # confirm someone else's form.
    sqlite_autoincrement=True,
)

# A supporter's own words for one action, inserted in their letters as text.
personal_words = Table(
    "personal_words",
    metadata,
    Column("supporter_id", BigId, ForeignKey("supporters.id", ondelete="CASCADE"), primary_key=True),
    Column("action_id", String(128), primary_key=True),
    Column("words", Text, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# Letters charged to each supporter's monthly cap, shared by every worker: a claim charges a
# letter once with a conditional update, so two workers cannot both take the last place.
letter_quota = Table(
    "letter_quota",
    metadata,
    Column("supporter_id", BigId, ForeignKey("supporters.id", ondelete="CASCADE"), primary_key=True),
    Column("month", String(7), primary_key=True),  # YYYY-MM, UTC
    Column("used", Integer, nullable=False),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("action_id", String(128), nullable=False),
    # None once the retention period after its action closed has passed: the letter still counts.
    Column("supporter_id", BigId, ForeignKey("supporters.id", ondelete="CASCADE")),
    Column("target_id", String(128), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("consent_id", BigId, ForeignKey("consents.id", ondelete="SET NULL")),
    # pending | sending | sent | failed | expired | cancelled
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("lease_owner", String(128)),
    Column("lease_until", UTCDateTime()),
    Column("language", String(35)),
    Column("last_error", Text),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("sent_at", UTCDateTime()),
    # A fax accepted by its provider (status submitted): whose job it is, and since when.
    Column("provider", String(32)),
    Column("provider_job", String(128)),
    Column("submitted_at", UTCDateTime()),
    # After a fax's last failure, the channel the letter goes by instead (a target's choice).
    Column("fallback", String(16)),
    # The month (YYYY-MM) this letter was charged to its supporter's cap, once, at first claim.
    Column("charged", String(7)),
    UniqueConstraint("action_id", "supporter_id", "target_id", "channel"),
    # A supporter's letters (revoke, forget, export) and a consent's (a change, expiry).
    Index(None, "supporter_id"),
    Index(None, "consent_id"),
    Index("ix_deliveries_provider_job", "provider", "provider_job"),
    # Which fax lines are busy: only rows in flight are indexed.
    Index(
        "ix_deliveries_in_flight",
        "channel",
        "action_id",
        "target_id",
        sqlite_where=text("status IN ('sending', 'submitted')"),
        postgresql_where=text("status IN ('sending', 'submitted')"),
    ),
    Index(None, "action_id", "target_id", "channel", "status", "next_attempt_at"),
    # The dashboard's progress per action and status (with "retrying"), from the index alone.
    Index("ix_deliveries_action_id_status_attempts", "action_id", "status", "attempts"),
    # Finding leases that ran out must not scan the table: only in-flight rows are indexed.
    Index(
        "ix_deliveries_leased",
        "lease_until",
        sqlite_where=text("status = 'sending'"),
        postgresql_where=text("status = 'sending'"),
    ),
)

# Token buckets shared by every worker (see dispatcher.pacing): a claim refills and spends them
# in its own transaction, so pacing holds for the deployment, not per process.
pacing_buckets = Table(
    "pacing_buckets",
    metadata,
    Column("key", String(400), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# Letters each recipient address or email domain received in one window (store/caps.py): a claim
# counts them in its own transaction, so the caps hold for the deployment, not per process.
cap_counts = Table(
    "cap_counts",
    metadata,
    # A window and a key: "hour 2026-12-07T14Z|email:x@parl.example", "day 2026-12-07
    # Europe/Brussels|domain:parl.example" (store/caps.py: Cap.counter).
    Column("counter", String(500), primary_key=True),
    Column("used", Integer, nullable=False),
    Column("ends", UTCDateTime(), nullable=False),  # when the window closes: old rows are dropped
)

# How far planning got: per action × target × channel, the highest consent id already expanded.
plan_marks = Table(
    "plan_marks",
    metadata,
    Column("action_id", String(128), primary_key=True),
    Column("target_id", String(128), primary_key=True),
    Column("channel", String(16), primary_key=True),
    Column("consent_id", BigId, nullable=False),
    # What it was planned under (the action's tags, the letter's language): a change plans afresh.
    Column("basis", String(64), nullable=False, server_default=""),
)

# Append-only: one row per attempt, never updated.
attempts = Table(
    "attempts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("delivery_id", BigId, ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False),
    Column("action_id", String(128), nullable=False),
    Column("target_id", String(128), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=False),
    # sent | retry | failed | interrupted | submitted
    Column("outcome", String(16), nullable=False),
    Column("code", Integer),
    Column("detail", Text, nullable=False, server_default=""),
    Column("worker", String(128), nullable=False),
    # Fax attempts: the provider and its job id, the number dialled (E.164), pages, seconds.
    Column("provider", String(32)),
    Column("job_id", String(128)),
    Column("destination", String(32)),
    Column("pages", Integer),
    Column("duration", Float),
    Index(None, "action_id", "target_id", "started_at"),
    Index(None, "delivery_id"),
    Index("ix_attempts_provider_job", "provider", "job_id"),
    # The dashboard's and /metrics' counts read these alone (bench/dashboard_scale.py).
    Index("ix_attempts_outcome_finished_at_action_id", "outcome", "finished_at", "action_id"),
    Index("ix_attempts_outcome_action_id_provider_pages", "outcome", "action_id", "provider", "pages"),
    Index("ix_attempts_action_id_channel_outcome", "action_id", "channel", "outcome"),
)

# A provider's final word that arrived before the submission it answers was committed (the
# provider can be faster than our commit): kept here and applied when the submission lands.
early_events = Table(
    "early_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("provider", String(32), nullable=False),
    Column("job_id", String(128), nullable=False),
    Column("delivered", Boolean, nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("failure", String(32)),
    Column("retry_at", UTCDateTime()),
    Column("pages", Integer),
    Column("duration", Float),
    Index(None, "provider", "job_id"),
)


# Webhook messages already applied, so a replayed one is refused (pruned after a few days).
webhook_messages = Table(
    "webhook_messages",
    metadata,
    Column("provider", String(32), primary_key=True),
    Column("message", String(200), primary_key=True),
    Column("received_at", UTCDateTime(), nullable=False),
    Index(None, "received_at"),
)

# Fax PDFs a provider fetches from our web app (Twilio-shaped APIs take a MediaUrl, not a file).
fax_media = Table(
    "fax_media",
    metadata,
    Column("reference", String(64), primary_key=True),
    Column("data", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Index(None, "created_at"),
)

# People who use the web app. Passwords are argon2 hashes; a session row per login, so logout
# and removing the user end it at once.
users = Table(
    "users",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id", String(64), primary_key=True),  # sha256 of the cookie's random token
    Column("user_id", BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("address", String(64), nullable=False, server_default=""),
    Index(None, "user_id"),
)

# Append-only: who changed what, when, from where (staff controls, requeues, accounts).
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("address", String(64), nullable=False, server_default=""),
    Column("action", String(32), nullable=False),
    Column("subject", String(200), nullable=False, server_default=""),
    Column("detail", Text, nullable=False, server_default=""),
    Index(None, "at"),
)

# Actions each dispatcher holds (see ``ActionHold``): the dashboard's forecast reads them. One row
# per worker: each rewrites only its own, so one worker's change never releases another's hold.
action_holds = Table(
    "action_holds",
    metadata,
    Column("action_id", String(128), primary_key=True),
    Column("kind", String(16), nullable=False),  # check | sending
    Column("reason", Text, nullable=False),
    Column("held_at", UTCDateTime(), nullable=False),
    Column("worker", String(128), primary_key=True),
    Column("templates", String(64), nullable=False),  # the template folder's stamp then
)

# When staff last released each action's holds: a "sending" hold taken before then is void, so a
# worker that writes its holds again before it noticed the release cannot bring it back.
hold_releases = Table(
    "hold_releases",
    metadata,
    Column("action_id", String(128), primary_key=True),
    Column("released_at", UTCDateTime(), nullable=False),
)

# Each running dispatcher says it is alive, and what it holds, every few seconds.
workers = Table(
    "workers",
    metadata,
    Column("worker_id", String(128), primary_key=True),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("last_seen", UTCDateTime(), nullable=False),
    Column("holding", Integer, nullable=False, server_default="0"),
    Column("sent", BigInteger, nullable=False, server_default="0"),
    Column("stopped_at", UTCDateTime()),  # a clean stop; a crash leaves only an old last_seen
)

# A target's daily digest (store/digests.py): which day it is, its Message-ID and members decided
# once, before the first send, so that a resend after a crash is the same message.
digests = Table(
    "digests",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("day", String(10), nullable=False),  # the target's local date, YYYY-MM-DD
    Column("action_id", String(128), nullable=False),
    Column("target_id", String(128), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("message_id", String(255), nullable=False),
    # sending (leased) | pending (a retry is due at next_attempt_at) | sent | failed
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("lease_owner", String(128)),
    Column("lease_until", UTCDateTime()),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("sent_at", UTCDateTime()),
    UniqueConstraint("action_id", "target_id", "channel", "day"),
)

digest_letters = Table(
    "digest_letters",
    metadata,
    Column("digest_id", BigId, ForeignKey("digests.id", ondelete="CASCADE"), primary_key=True),
    Column("delivery_id", BigId, ForeignKey("deliveries.id", ondelete="CASCADE"), primary_key=True),
    Index(None, "delivery_id"),
)
