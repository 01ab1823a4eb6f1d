"""``Store`` over SQLAlchemy: a SQLite file (default) or PostgreSQL (several workers)."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Interval,
    and_,
    bindparam,
    case,
    create_engine,
    delete,
    event,
    exists,
    func,
    literal,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.sql import ColumnElement, CompoundSelect, Select

from dispatcher import capabilities, pacing
from dispatcher.models import HoldKind
from dispatcher.pacing import Limits
from dispatcher.store import (
    ALIVE,
    WORKERS_KEPT,
    ActionHold,
    ActionState,
    AttemptResult,
    AttemptRow,
    Backlog,
    Claim,
    ClaimBatch,
    ClaimGroup,
    ClaimRequest,
    GroupId,
    Outcome,
    Progress,
    ProviderEvent,
    QueueCount,
    Resolution,
    Retry,
    SentCount,
    Signer,
    Status,
    Store,
    SupporterRecord,
    WorkerBeat,
    mandates,
    quota,
    released_before,
    submissions,
)
from dispatcher.store.accounts import SqlAccounts
from dispatcher.store.people import SqlPeople
from dispatcher.store.privacy import SqlPrivacy, retained_key
from dispatcher.store.reading import READ_OPTION, reading
from dispatcher.store.reasons import unsigned_language
from dispatcher.store.reports import LogFilter, SqlReports
from dispatcher.store.schema import (
    UTCDateTime,
    action_holds,
    action_state,
    attempts,
    consents,
    deliveries,
    early_events,
    fax_media,
    hold_releases,
    meta,
    pacing_buckets,
    personal_words,
    plan_marks,
    supporters,
    webhook_messages,
    workers,
)

IMPORT_BATCH = 1000
# PostgreSQL sessions: a transaction left idle this long (its process frozen: SIGSTOP, a VM
# pause) is ended by the server, and its row locks with it; no transaction of ours idles for more
# than milliseconds. No lock is waited for longer than LOCK_WAIT: a stuck holder becomes an error
# in the log instead of a silent hang. The database URL's own ``options`` win over these.
IDLE_IN_TRANSACTION = 5.0  # seconds
LOCK_WAIT = 30.0  # seconds
# A server that stops answering (a partition drops packets, no reset) is an error within seconds,
# so the outage logic starts and SIGTERM can end the worker: connecting gives up after
# connect_timeout; an idle connection is probed after 5 s and dropped after 3 unanswered probes;
# data unacknowledged for 15 s drops the connection. The URL's own parameters win over these.
SILENT_SERVER = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 15000,  # milliseconds
}
# A claim waits this long for the pacing buckets, then gives up and is tried again next round:
# the worker's other store calls (recovering leases, recording results) are not held behind it.
CLAIM_LOCK_WAIT = "1s"
CLAIM_AGAIN = 0.2  # seconds until a claim given up is asked again
# Lock wait timed out (another worker holds the buckets); this session's transaction ended by
# the server after it idled (this worker was the frozen one).
_CLAIM_GIVEN_UP = frozenset({"55P03", "25P03"})

log = logging.getLogger("dispatcher")


def _owner_only(database: str) -> None:
    """Create the SQLite file (and its folder) readable by its owner alone, or tighten it.

    It holds supporters' names and addresses and the Message-ID secret. SQLite gives its -wal and
    -shm files the database file's permissions.
    """
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)


def engine_for(url: str) -> Engine:
    # hide_parameters: errors are logged and printed, and their parameters hold supporters'
    # addresses and the Message-ID secret.
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        # psycopg 3 is the driver we ship; SQLAlchemy would otherwise look for psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() != "sqlite":
        return _postgres_engine(parsed)
    if parsed.database and parsed.database != ":memory:":
        _owner_only(parsed.database)
    engine = create_engine(
        parsed, hide_parameters=True, connect_args={"timeout": 30, "check_same_thread": False}
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" below decide transactions, not the sqlite3 module.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed attempt survives power loss, not only a killed process.
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # A write takes the lock up front (IMMEDIATE), so two processes claiming from one file
        # serialise instead of both reading the same pending rows. A read takes no lock: under
        # WAL it sees a snapshot, and a long export never stalls the senders.
        read = conn.get_execution_options().get(READ_OPTION, False)
        conn.exec_driver_sql("BEGIN" if read else "BEGIN IMMEDIATE")

    return engine


def _postgres_engine(url: URL) -> Engine:
    ours = f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION:g}s -c lock_timeout={LOCK_WAIT:g}s"
    own = url.query.get("options")
    own = " ".join(own) if isinstance(own, tuple) else own
    # Later settings win: the operator's options come after ours.
    options = f"{ours} {own}" if own else ours
    url = url.difference_update_query(["options"])
    # The URL's own values win over ours (SQLAlchemy lets connect_args win, so leave them out).
    silence = {k: v for k, v in SILENT_SERVER.items() if k not in url.query}
    connect_args = {"options": options, **silence}
    return create_engine(url, pool_pre_ping=True, hide_parameters=True, connect_args=connect_args)


def _basis(tags: Sequence[str], language: str | None) -> str:
    """What a pair's watermark was planned under: the action's tags, the letter's language."""
    return hashlib.sha256(f"{sorted(tags)}|{language}".encode()).hexdigest()[:16]


def _releases(conn: Connection) -> dict[str, dt.datetime]:
    rows = conn.execute(select(hold_releases)).all()
    return {r.action_id: r.released_at for r in rows}


@dataclass(frozen=True)
class _Window:
    """One planning batch: consents with ids in (lo, hi] whose scope is one of ``scopes`` and
    who sign letters in ``language`` (None: the letter's language is not known)."""

    scopes: list[str]
    lo: int
    hi: int
    language: str | None
    now: dt.datetime


def _consented(now: dt.datetime) -> ColumnElement[bool]:
    """The letter's consent still allows it: not withdrawn, ended or lapsed. A letter past its
    retention period has no consent left, so never qualifies."""
    c = consents
    live = and_(
        c.c.revoked_at.is_(None), c.c.ended_at.is_(None), or_(c.c.expires_at.is_(None), c.c.expires_at > now)
    )
    return exists().where(c.c.id == deliveries.c.consent_id, live)


def _compound(parts: Sequence[Select[Any]]) -> Iterator[Select[Any] | CompoundSelect[Any]]:
    """UNION ALL of ``parts``: one statement for most rounds (SQLite allows 500 terms in one)."""
    for chunk in range(0, len(parts), 200):
        piece = parts[chunk : chunk + 200]
        yield piece[0] if len(piece) == 1 else union_all(*piece)


def _landed(conn: Connection, worker: str, results: Sequence[AttemptResult]) -> set[int]:
    """Deliveries whose outcome here is already recorded: a retry of a ``record`` whose COMMIT
    landed but whose answer was lost. Its attempt row is there and the letter is no longer
    leased to this worker (a new attempt would have leased it again)."""
    d, a = deliveries, attempts
    mine = and_(d.c.status == Status.SENDING, d.c.lease_owner == worker)
    rows = conn.execute(
        select(a.c.delivery_id, a.c.started_at, a.c.outcome)
        .join(d, d.c.id == a.c.delivery_id)
        .where(a.c.delivery_id.in_([r.delivery_id for r in results]), a.c.worker == worker, ~mine)
    )
    seen = {(r.delivery_id, r.started_at, r.outcome) for r in rows}
    return {r.delivery_id for r in results if (r.delivery_id, r.started_at, r.outcome.value) in seen}


def _submission_columns(result: AttemptResult) -> dict[str, object]:
    sub = result.submission
    if sub is None:
        return {"provider": None, "job_id": None, "destination": None, "pages": None}
    return {
        "provider": sub.provider,
        "job_id": sub.job_id,
        "destination": sub.destination,
        "pages": sub.pages,
    }


def _staff_closed(action_id: str) -> ColumnElement[bool]:
    a = action_state
    return exists().where(a.c.action_id == action_id, a.c.status == "closed")


def _still_finished(
    action_id: str, status: Status, now: dt.datetime, deadline: dt.datetime, by_file: bool
) -> ColumnElement[bool]:
    """The store's own action state, read in the UPDATE itself, still ends the action: a sweep
    working from a snapshot taken before a reopen or an extend changes nothing (compare-and-set)."""
    if status is Status.EXPIRED:
        a = action_state
        extended = select(a.c.deadline).where(a.c.action_id == action_id).scalar_subquery()
        return func.coalesce(extended, literal(deadline, UTCDateTime())) <= now  # past the deadline in force
    return true() if by_file else _staff_closed(action_id)


def _closed_mark(action_id: str, status: Status) -> dict[str, Any]:
    """Letters cancelled while staff hold the action closed carry the mark reopen looks for:
    whichever process cancelled them, by whatever clock."""
    if status is not Status.CANCELLED:
        return {}
    marked = case((_staff_closed(action_id), mandates.CLOSED_BY_STAFF), else_=deliveries.c.last_error)
    return {"last_error": marked}


def _alive_owner(worker: str, since: ColumnElement[dt.datetime]) -> ColumnElement[bool]:
    """The lease's owner, another worker, beat within ALIVE and has not stopped: it runs, and
    its leases ran out only because the store was away; it renews them itself once it answers.
    A worker's own expired leases are its to take back (a restart under the same id)."""
    w, d = workers, deliveries
    return exists().where(
        w.c.worker_id == d.c.lease_owner,
        w.c.worker_id != worker,
        w.c.last_seen > since,
        w.c.stopped_at.is_(None),
    )


class SqlStore(Store):
    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.engine = engine_for(url)
        self.dialect = self.engine.dialect.name
        if migrate:
            from dispatcher.store.migrate import upgrade

            upgrade(self.engine)
        self._secret: bytes | None = None
        self._accounts = SqlAccounts(self.engine)
        self._reports = SqlReports(self.engine)
        self._people = SqlPeople(self.engine)
        self._privacy = SqlPrivacy(self.engine)

    @property
    def accounts(self) -> SqlAccounts:
        return self._accounts

    @property
    def reports(self) -> SqlReports:
        return self._reports

    @property
    def people(self) -> SqlPeople:
        return self._people

    @property
    def privacy(self) -> SqlPrivacy:
        return self._privacy

    def heartbeat(self, beat: WorkerBeat) -> None:
        values = {k: getattr(beat, k) for k in ("last_seen", "holding", "sent", "stopped_at")}
        with self.engine.begin() as conn:
            upsert = self._insert(workers).values(
                worker_id=beat.worker_id, started_at=beat.started_at, **values
            )
            conn.execute(upsert.on_conflict_do_update(index_elements=["worker_id"], set_=values))
            # A worker whose clock runs an hour ahead must not erase every other worker's row.
            forget_before = self._before_by_store(beat.last_seen, WORKERS_KEPT)
            conn.execute(delete(workers).where(workers.c.last_seen < forget_before))

    def _before_by_store(self, now: dt.datetime, span: dt.timedelta) -> ColumnElement[dt.datetime]:
        """``span`` before ``now``, or before the store's clock if that is behind: a worker whose
        clock runs ahead neither forgets nor gives up on the others early (last_seen is each
        writer's clock)."""
        if self.dialect == "sqlite":  # a file on this host: the store's clock is this host's
            return literal(min(now, dt.datetime.now(dt.UTC)) - span, UTCDateTime())
        return func.least(literal(now, UTCDateTime()), func.now()) - literal(span, Interval())

    def workers(self) -> list[WorkerBeat]:
        with self._read() as conn:
            rows = conn.execute(select(workers).order_by(workers.c.last_seen.desc()))
            return [WorkerBeat(**r._mapping) for r in rows]

    def action_holds(self, now: dt.datetime) -> list[ActionHold]:
        h, kept = action_holds, workers.c.last_seen >= now - WORKERS_KEPT
        # A stopped worker sends nothing: its check holds (its host's font) say nothing now.
        said = or_(h.c.kind == HoldKind.SENDING, workers.c.stopped_at.is_(None))
        r = hold_releases
        # A sending hold taken before staff released the action is void (T2).
        valid = or_(h.c.kind != HoldKind.SENDING, r.c.released_at.is_(None), h.c.held_at > r.c.released_at)
        query = (
            select(h)
            .join(workers, workers.c.worker_id == h.c.worker)
            .outerjoin(r, r.c.action_id == h.c.action_id)
            .where(kept, said, valid)
        )
        with self._read() as conn:
            rows = conn.execute(query.order_by(h.c.held_at, h.c.action_id, h.c.worker)).all()
        return [ActionHold(**r._mapping) for r in rows]

    def set_holds(self, worker: str, holds: Mapping[str, ActionHold]) -> None:
        h = action_holds
        with self.engine.begin() as conn:
            conn.execute(delete(h).where(h.c.worker == worker, h.c.action_id.not_in(list(holds))))
            released = _releases(conn)
            for hold in holds.values():
                if released_before(hold, released):
                    continue  # staff released it since: this worker forgets it at its next plan
                changes = {k: getattr(hold, k) for k in ("kind", "reason", "templates")}
                upsert = self._insert(h).values(
                    action_id=hold.action_id, worker=worker, held_at=hold.held_at, **changes
                )
                conn.execute(
                    upsert.on_conflict_do_update(index_elements=["action_id", "worker"], set_=changes)
                )

    def release_holds(self, action_id: str, now: dt.datetime) -> int:
        with self.engine.begin() as conn:
            dropped = conn.execute(delete(action_holds).where(action_holds.c.action_id == action_id))
            when = {"released_at": now}
            upsert = self._insert(hold_releases).values(action_id=action_id, **when)
            conn.execute(upsert.on_conflict_do_update(index_elements=["action_id"], set_=when))
            return int(dropped.rowcount)

    def hold_releases(self) -> dict[str, dt.datetime]:
        with self._read() as conn:
            return _releases(conn)

    def close(self) -> None:
        self.engine.dispose()

    def _read(self) -> contextlib.AbstractContextManager[Connection]:
        return reading(self.engine)

    def _insert(self, table: Any) -> Any:
        module = postgresql if self.dialect == "postgresql" else sqlite
        return module.insert(table)

    def instance_secret(self) -> bytes:
        if self._secret is None:
            with self.engine.begin() as conn:
                conn.execute(
                    self._insert(meta)
                    .values(key="instance_secret", value=secrets.token_hex(16))
                    .on_conflict_do_nothing()
                )
                value = conn.scalar(select(meta.c.value).where(meta.c.key == "instance_secret"))
            self._secret = bytes.fromhex(str(value))
        return self._secret

    # runtime state -----------------------------------------------------------------------
    def action_states(self) -> dict[str, ActionState]:
        with self._read() as conn:
            rows = conn.execute(select(action_state)).all()
        return {
            r.action_id: ActionState(r.action_id, r.status, r.deadline, r.updated_at, r.updated_by)
            for r in rows
        }

    def set_action_state(
        self,
        action_id: str,
        *,
        by: str,
        now: dt.datetime,
        status: str | None = None,
        deadline: dt.datetime | None = None,
    ) -> None:
        changes: dict[str, Any] = {"updated_at": now, "updated_by": by}
        if status is not None:
            changes["status"] = status
        if deadline is not None:
            changes["deadline"] = deadline
        stmt = self._insert(action_state).values(action_id=action_id, **changes)
        stmt = stmt.on_conflict_do_update(index_elements=["action_id"], set_=changes)
        with self.engine.begin() as conn:
            conn.execute(stmt)

    # supporters --------------------------------------------------------------------------
    def import_supporters(self, records: Iterable[SupporterRecord], now: dt.datetime) -> int:
        written = 0
        with self.engine.begin() as conn:
            batch: list[SupporterRecord] = []
            for record in records:
                batch.append(record)
                if len(batch) >= IMPORT_BATCH:
                    written += mandates.upsert_supporters(conn, batch, now)
                    batch = []
            if batch:
                written += mandates.upsert_supporters(conn, batch, now)
        return written

    def supporter_count(self) -> int:
        with self._read() as conn:
            return int(conn.scalar(select(func.count()).select_from(supporters)) or 0)

    def find_signer(self, email: str) -> Signer | None:
        s = supporters
        # Imported addresses are stored in lower case; whoever types one may not.
        with self._read() as conn:
            row = conn.execute(
                select(s.c.name, s.c.email, s.c.city, s.c.country, s.c.language).where(
                    s.c.email == email.strip().lower()
                )
            ).first()
        return Signer(*row) if row else None

    # planning ----------------------------------------------------------------------------
    def plan(
        self,
        action_id: str,
        pairs: Sequence[tuple[str, str]],
        now: dt.datetime,
        batch: int = 5000,
        progress: Progress | None = None,
        fallbacks: Mapping[str, str] | None = None,
        tags: Sequence[str] = (),
        languages: Mapping[str, str] | None = None,
    ) -> int:
        # Consents are only ever added (a change ends a row and adds one), so each pair keeps a
        # watermark: the highest consent id it has planned. Re-planning every minute then reads
        # only new consents, and a new action or target starts from zero, as does a pair whose
        # basis (the action's tags, the letter's language) changed since.
        top, marks = self._plan_marks(action_id)
        if top is None:
            return 0
        scopes = ["all", action_id, *(f"tag:{t}" for t in tags)]
        todo = []
        for target_id, channel in pairs:
            language = (languages or {}).get(target_id)
            basis = _basis(tags, language)
            mark, was = marks.get((target_id, channel), (0, basis))
            if was != basis:
                self._drop_unsigned(action_id, (target_id, channel), language, now)
                mark = 0
            todo.append((target_id, channel, _Window(scopes, mark, top, language, now), basis))
        total = sum(top - w.lo for *_, w, _ in todo)
        created = done = 0
        for target_id, channel, whole, basis in todo:
            fallback = (fallbacks or {}).get(target_id) if capabilities.of(channel).falls_back else None
            for lo in range(whole.lo, top, batch):
                window = replace(whole, lo=lo, hi=min(lo + batch, top))
                with self.engine.begin() as conn:
                    created += self._plan_batch(conn, action_id, (target_id, channel, fallback), window)
                    reached = {"consent_id": window.hi, "basis": basis}
                    conn.execute(
                        self._insert(plan_marks)
                        .values(action_id=action_id, target_id=target_id, channel=channel, **reached)
                        .on_conflict_do_update(
                            index_elements=["action_id", "target_id", "channel"], set_=reached
                        )
                    )
                done += window.hi - lo
                if progress:
                    progress(done, total)
        return created

    def _drop_unsigned(
        self, action_id: str, pair: tuple[str, str], language: str | None, now: dt.datetime
    ) -> None:
        """The pair's letter is now written in ``language``: its waiting letters whose supporter
        does not sign in that language are cancelled."""
        if language is None:
            return
        c, d = consents, deliveries
        signs = (" " + c.c.languages + " ").contains(f" {language} ")
        unsigned = select(c.c.id).where(c.c.languages != "*", ~signs)
        mine = and_(d.c.action_id == action_id, d.c.target_id == pair[0], d.c.channel == pair[1])
        waiting = and_(mine, d.c.status == Status.PENDING, d.c.consent_id.in_(unsigned))
        why = unsigned_language(language)
        with self.engine.begin() as conn:
            conn.execute(
                update(d).where(waiting).values(status=Status.CANCELLED.value, last_error=why, updated_at=now)
            )

    def _plan_marks(self, action_id: str) -> tuple[int | None, dict[tuple[str, str], tuple[int, str]]]:
        """The highest consent id, and the action's watermarks; None while consents are being
        written (PostgreSQL hands out ids before commit, so a lower id could still appear), and
        for an action past its retention period."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # SHARE waits for every transaction writing consents to end: below the top read
                # here, nothing can commit later. A long import makes planning wait a round.
                conn.exec_driver_sql("SET LOCAL lock_timeout = '2s'")
                try:
                    conn.exec_driver_sql("LOCK TABLE consents IN SHARE MODE")
                except OperationalError as exc:
                    if getattr(exc.orig, "sqlstate", None) != "55P03":
                        raise
                    return None, {}
            if conn.scalar(select(meta.c.key).where(meta.c.key == retained_key(action_id))):
                return None, {}
            top = int(conn.scalar(select(func.max(consents.c.id))) or 0)
            marks = {
                (r.target_id, r.channel): (r.consent_id, r.basis)
                for r in conn.execute(select(plan_marks).where(plan_marks.c.action_id == action_id))
            }
        return top, marks

    def _plan_batch(
        self,
        conn: Connection,
        action_id: str,
        pair: tuple[str, str, str | None],  # target id, channel, fallback channel
        window: _Window,
    ) -> int:
        target_id, channel, fallback = pair
        s, c, now = supporters, consents, window.now
        signs = or_(c.c.languages == "*", (" " + c.c.languages + " ").contains(f" {window.language} "))
        chosen = (
            select(
                literal(action_id),
                s.c.id,
                literal(target_id),
                literal(channel),
                func.min(c.c.id),
                literal(Status.PENDING.value),
                literal(0),
                literal(now, deliveries.c.next_attempt_at.type),
                literal(now, deliveries.c.created_at.type),
                literal(now, deliveries.c.updated_at.type),
                literal(fallback, deliveries.c.fallback.type),
            )
            .join(c, c.c.supporter_id == s.c.id)
            .where(
                c.c.id > window.lo,
                c.c.id <= window.hi,
                c.c.scope.in_(window.scopes),
                c.c.revoked_at.is_(None),
                c.c.ended_at.is_(None),
                c.c.confirmed_at.is_not(None),
                or_(c.c.expires_at.is_(None), c.c.expires_at > now),
                or_(c.c.channels == "*", c.c.channels.contains(channel)),
                signs if window.language else true(),
            )
            .group_by(s.c.id)
        )
        columns = [
            "action_id",
            "supporter_id",
            "target_id",
            "channel",
            "consent_id",
            "status",
            "attempts",
            "next_attempt_at",
            "created_at",
            "updated_at",
            "fallback",
        ]
        stmt = (
            self._insert(deliveries)
            .from_select(columns, chosen)
            .on_conflict_do_nothing()
            # rowcount of INSERT … SELECT is -1 through SQLAlchemy on psycopg 3.
            .returning(deliveries.c.id)
        )
        return len(conn.execute(stmt).all())

    # sending -----------------------------------------------------------------------------
    def claim(self, worker: str, request: ClaimRequest, now: dt.datetime, lease: dt.timedelta) -> ClaimBatch:
        groups = list(request.groups)
        if not groups:
            return ClaimBatch([], frozenset(), None)
        try:
            return self._claim(worker, groups, request, now, lease)
        except DBAPIError as exc:
            # Nothing of a claim outlives its transaction: one given up is simply asked again.
            if getattr(exc.orig, "sqlstate", None) not in _CLAIM_GIVEN_UP and not exc.connection_invalidated:
                raise
            log.warning("claim given up, asking again: %s", str(exc.orig).partition("\n")[0])
            return ClaimBatch([], frozenset(), CLAIM_AGAIN)

    def _claim(
        self,
        worker: str,
        groups: list[ClaimGroup],
        request: ClaimRequest,
        now: dt.datetime,
        lease: dt.timedelta,
    ) -> ClaimBatch:
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(select(func.set_config("lock_timeout", CLAIM_LOCK_WAIT, True)))
            tokens = self._buckets(conn, groups, request.limits, now)
            tokens |= self._lines(conn, groups)
            wanted = pacing.asks(groups, tokens, request.room)
            rows = self._due(conn, groups, wanted, now)
            chosen = pacing.allocate(groups, rows, tokens, dict(request.room), request.start)
            claims = self._lease(conn, worker, [row for _, row in chosen], now, lease)
            self._spend(conn, tokens, now)
        dry = frozenset(g.ident for g, n, got in zip(groups, wanted, rows, strict=True) if n and len(got) < n)
        waiting = [g for g in groups if g.ident not in dry]
        return ClaimBatch(claims, dry, pacing.wait(waiting, tokens, request.limits))

    def _buckets(
        self, conn: Connection, groups: Sequence[ClaimGroup], limits: Limits, now: dt.datetime
    ) -> dict[str, float]:
        """Lock and refill every bucket these groups spend (the global one first, always)."""
        keys = sorted({pacing.GLOBAL, *(k for g in groups for k in g.keys)})
        b = pacing_buckets
        conn.execute(
            self._insert(b)
            .values([{"key": k, "tokens": limits.of(k)[1], "updated_at": now} for k in keys])
            .on_conflict_do_nothing()
        )
        # Sorted, the global bucket first: every claim locks in the same order, and no two
        # claims deadlock on each other's buckets.
        found = conn.execute(
            select(b.c.key, b.c.tokens, b.c.updated_at)
            .where(b.c.key.in_(keys))
            .order_by(b.c.key)
            .with_for_update()
        )
        return {r.key: pacing.refilled(r.tokens, r.updated_at, now, *limits.of(r.key)) for r in found}

    def _lines(self, conn: Connection, groups: Sequence[ClaimGroup]) -> dict[str, float]:
        """One token per line, none for a line with a letter in flight (leased or submitted)."""
        lines = {g.ident: g.line for g in groups if g.line}
        if not lines:
            return {}
        d = deliveries
        in_flight = conn.execute(
            select(d.c.action_id, d.c.target_id, d.c.channel)
            .where(
                d.c.status.in_([Status.SENDING, Status.SUBMITTED]), d.c.channel.in_({c for _, _, c in lines})
            )
            .distinct()
        )
        busy = {lines.get((r.action_id, r.target_id, r.channel)) for r in in_flight}
        return {line: 0.0 if line in busy else 1.0 for line in lines.values() if line}

    def _spend(self, conn: Connection, tokens: dict[str, float], now: dt.datetime) -> None:
        b = pacing_buckets
        left = {k: v for k, v in tokens.items() if not k.startswith("line:")}
        # One statement, not one per bucket: psycopg sends an executemany as a pipeline, and a
        # process frozen before the pipeline's last message leaves a session that PostgreSQL
        # counts as busy, not idle, so it never times out and the bucket locks stay held.
        level = case(left, value=b.c.key, else_=b.c.tokens)
        conn.execute(update(b).where(b.c.key.in_(list(left))).values(tokens=level, updated_at=now))

    def _due(
        self, conn: Connection, groups: Sequence[ClaimGroup], wanted: Sequence[int], now: dt.datetime
    ) -> list[list[int]]:
        """Up to ``wanted[i]`` due delivery ids of each group, oldest due first: one statement."""
        d, c = deliveries, consents
        parts = []
        for i, (g, n) in enumerate(zip(groups, wanted, strict=True)):
            if n <= 0:
                continue
            head = (
                select(d.c.id, literal(i).label("g"))
                .join(c, c.c.id == d.c.consent_id)
                .where(
                    d.c.action_id == g.action_id,
                    d.c.target_id == g.target_id,
                    d.c.channel == g.channel,
                    d.c.status == Status.PENDING,
                    d.c.next_attempt_at <= now,
                    # Nothing goes out on a consent that lapsed, ended or was withdrawn.
                    c.c.revoked_at.is_(None),
                    c.c.ended_at.is_(None),
                    or_(c.c.expires_at.is_(None), c.c.expires_at > now),
                )
                .order_by(d.c.next_attempt_at)
                .limit(n)
                .with_for_update(skip_locked=True, of=d)
                .subquery()
            )
            parts.append(select(head.c.id, head.c.g))
        out: list[list[int]] = [[] for _ in groups]
        for query in _compound(parts):
            for row in conn.execute(query):
                out[row.g].append(row.id)
        return out

    def _lease(
        self, conn: Connection, worker: str, ids: list[int], now: dt.datetime, lease: dt.timedelta
    ) -> list[Claim]:
        ids = quota.charge(conn, ids, now)
        if not ids:
            return []
        d, s, c, w = deliveries, supporters, consents, personal_words
        conn.execute(
            update(d)
            .where(d.c.id.in_(ids))
            .values(
                status=Status.SENDING.value,
                lease_owner=worker,
                lease_until=now + lease,
                attempts=d.c.attempts + 1,
                updated_at=now,
            )
        )
        full = c.c.name_display != "name"  # "name": the letter is signed by the name alone
        rows = conn.execute(
            select(
                d.c.id,
                d.c.action_id,
                d.c.target_id,
                d.c.channel,
                d.c.attempts,
                s.c.name,
                s.c.email,
                case((full, s.c.city), else_="").label("city"),
                case((full, s.c.country), else_="").label("country"),
                s.c.language,
                w.c.words,
                c.c.replies,
            )
            .join(s, s.c.id == d.c.supporter_id)
            .join(c, c.c.id == d.c.consent_id)
            .outerjoin(w, and_(w.c.supporter_id == d.c.supporter_id, w.c.action_id == d.c.action_id))
            .where(d.c.id.in_(ids))
        )
        by_id = {
            r.id: Claim(
                delivery_id=r.id,
                action_id=r.action_id,
                target_id=r.target_id,
                channel=r.channel,
                attempt=r.attempts,
                signer=Signer(r.name, r.email, r.city, r.country, r.language, r.words or "", r.replies),
            )
            for r in rows
        }
        return [by_id[i] for i in ids]  # the fair order the allocator chose

    def recover(self, worker: str, now: dt.datetime, others: bool = True) -> int:
        d = deliveries
        alive_since = self._before_by_store(now, ALIVE)
        whose = ~_alive_owner(worker, alive_since) if others else d.c.lease_owner == worker
        with self.engine.begin() as conn:
            lost = conn.execute(
                select(d.c.id, d.c.action_id, d.c.target_id, d.c.channel, d.c.lease_owner)
                .where(d.c.status == Status.SENDING, d.c.lease_until < now, whose)
                .with_for_update(skip_locked=True)
            ).all()
            if not lost:
                return 0
            conn.execute(
                attempts.insert(),
                [
                    {
                        "delivery_id": row.id,
                        "action_id": row.action_id,
                        "target_id": row.target_id,
                        "channel": row.channel,
                        "started_at": now,
                        "finished_at": now,
                        "outcome": Outcome.INTERRUPTED.value,
                        "detail": f"lease of {row.lease_owner} ran out mid-attempt; "
                        "outcome unknown, sending again with the same Message-ID",
                        "worker": worker,
                    }
                    for row in lost
                ],
            )
            # Its due time stays what it was: claims take the oldest due first, so a letter taken
            # back goes out next, not behind every letter queued since.
            conn.execute(
                update(d)
                .where(d.c.id.in_([row.id for row in lost]))
                .values(status=Status.PENDING.value, lease_owner=None, lease_until=None, updated_at=now)
            )
        return len(lost)

    def release(self, worker: str, delivery_ids: Sequence[int], now: dt.datetime) -> int:
        if not delivery_ids:
            return 0
        d = deliveries
        with self.engine.begin() as conn:
            return conn.execute(
                update(d)
                .where(
                    d.c.id.in_(list(delivery_ids)), d.c.lease_owner == worker, d.c.status == Status.SENDING
                )
                .values(
                    status=Status.PENDING.value,
                    lease_owner=None,
                    lease_until=None,
                    attempts=d.c.attempts - 1,
                    updated_at=now,
                )
            ).rowcount

    def renew(self, worker: str, delivery_ids: Sequence[int], until: dt.datetime) -> int:
        if not delivery_ids:
            return 0
        d = deliveries
        # Only a lease still ours: one another worker took back after a freeze stays theirs.
        mine = and_(d.c.id.in_(list(delivery_ids)), d.c.lease_owner == worker, d.c.status == Status.SENDING)
        with self.engine.begin() as conn:
            return conn.execute(update(d).where(mine).values(lease_until=until)).rowcount

    def expire_leases_of(self, worker: str, now: dt.datetime) -> int:
        d = deliveries
        with self.engine.begin() as conn:
            return conn.execute(
                update(d)
                .where(d.c.lease_owner == worker, d.c.status == Status.SENDING)
                .values(lease_until=now - dt.timedelta(microseconds=1))
            ).rowcount

    def record(self, worker: str, results: Sequence[AttemptResult], retry: Retry) -> None:
        if not results:
            return
        d = deliveries
        with self.engine.begin() as conn:
            landed = _landed(conn, worker, results)
            results = submissions.fall_back_failed(conn, [r for r in results if r.delivery_id not in landed])
            if not results:
                return
            conn.execute(
                attempts.insert(),
                [
                    {
                        "delivery_id": r.delivery_id,
                        "action_id": r.action_id,
                        "target_id": r.target_id,
                        "channel": r.channel,
                        "started_at": r.started_at,
                        "finished_at": r.finished_at,
                        "outcome": r.outcome.value,
                        "code": r.code,
                        "detail": r.detail,
                        "worker": worker,
                        **_submission_columns(r),
                    }
                    for r in results
                ],
            )
            submissions.record_submitted(conn, worker, results, retry)
            # What happened on the wire wins: a letter sent while staff closed the action is sent.
            # Sent letters are the bulk: one UPDATE per language and group, not one per letter
            # (sent_at is the group's last finish; each attempt row keeps its exact time).
            sent: dict[str | None, list[AttemptResult]] = {}
            for r in results:
                if r.outcome is Outcome.SENT:
                    sent.setdefault(r.language, []).append(r)
            for language, group in sent.items():
                finished = max(r.finished_at for r in group)
                conn.execute(
                    update(d)
                    .where(d.c.id.in_([r.delivery_id for r in group]))
                    .values(
                        status=Status.SENT.value,
                        sent_at=finished,
                        last_error=None,
                        language=language,
                        lease_owner=None,
                        lease_until=None,
                        updated_at=finished,
                    )
                )
            failed = [r for r in results if r.outcome is Outcome.FAILED]
            quota.refund(conn, [r.delivery_id for r in failed])
            if failed:
                conn.execute(
                    update(d)
                    .where(d.c.id == bindparam("b_id"))
                    .values(
                        status=Status.FAILED.value,
                        last_error=bindparam("b_error"),
                        language=bindparam("b_language"),
                        lease_owner=None,
                        lease_until=None,
                        updated_at=bindparam("b_now"),
                    ),
                    [
                        {
                            "b_id": r.delivery_id,
                            "b_error": r.detail,
                            "b_language": r.language,
                            "b_now": r.finished_at,
                        }
                        for r in failed
                    ],
                )
            # A retry must not revive a delivery that was cancelled or expired meanwhile.
            again = [r for r in results if r.outcome is Outcome.RETRY]
            if again:
                conn.execute(
                    update(d)
                    .where(
                        d.c.id == bindparam("b_id"),
                        d.c.status == Status.SENDING,
                        d.c.lease_owner == worker,
                    )
                    .values(
                        status=Status.PENDING.value,
                        next_attempt_at=bindparam("b_next"),
                        last_error=bindparam("b_error"),
                        lease_owner=None,
                        lease_until=None,
                        updated_at=bindparam("b_now"),
                    ),
                    [
                        {
                            "b_id": r.delivery_id,
                            "b_next": r.next_attempt_at or r.finished_at,
                            "b_error": r.detail,
                            "b_now": r.finished_at,
                        }
                        for r in again
                    ],
                )

    def resolve(self, event: ProviderEvent, by: str, retry: Retry) -> Resolution:
        with self.engine.begin() as conn:
            return submissions.resolve(conn, event, by, retry)

    def accept_webhook(
        self, provider: str, message: str, event: ProviderEvent | None, retry: Retry, now: dt.datetime
    ) -> Resolution | None:
        with self.engine.begin() as conn:
            seen = self._insert(webhook_messages).values(provider=provider, message=message, received_at=now)
            # rowcount is unreliable for INSERT … ON CONFLICT on psycopg 3: ask for the row.
            if (
                conn.execute(seen.on_conflict_do_nothing().returning(webhook_messages.c.message)).first()
                is None
            ):
                return None
            return submissions.resolve(conn, event, f"webhook:{provider}", retry) if event else None

    def put_media(self, reference: str, data: bytes, now: dt.datetime) -> None:
        with self.engine.begin() as conn:
            put = self._insert(fax_media).values(reference=reference, data=data, created_at=now)
            conn.execute(put.on_conflict_do_update(index_elements=["reference"], set_={"data": data}))

    def media(self, reference: str) -> bytes | None:
        with self._read() as conn:
            data = conn.scalar(select(fax_media.c.data).where(fax_media.c.reference == reference))
        return None if data is None else bytes(data)

    def prune_fax_records(self, before: dt.datetime) -> int:
        with self.engine.begin() as conn:
            # An early event whose submission never came (another app's fax on the account).
            gone = conn.execute(delete(early_events).where(early_events.c.at < before)).rowcount
            gone += conn.execute(delete(fax_media).where(fax_media.c.created_at < before)).rowcount
            w = webhook_messages
            return gone + conn.execute(delete(w).where(w.c.received_at < before)).rowcount

    def submitted_for(self, provider: str, action_ids: Sequence[str]) -> list[str]:
        d = deliveries
        query = select(d.c.provider_job).where(
            d.c.provider == provider, d.c.status == Status.SUBMITTED, d.c.action_id.in_(action_ids)
        )
        with self._read() as conn:
            return [str(job) for job in conn.scalars(query)]

    def submitted(self, provider: str, limit: int) -> list[str]:
        d = deliveries
        query = (
            select(d.c.provider_job)
            .where(d.c.provider == provider, d.c.status == Status.SUBMITTED)
            .order_by(d.c.submitted_at)
            .limit(limit)
        )
        with self._read() as conn:
            return [str(job) for job in conn.scalars(query)]

    def next_due(self, groups: Sequence[GroupId], now: dt.datetime) -> dt.datetime | None:
        if not groups:
            return None
        d = deliveries
        # The first letter by due time that may still go (its consent lives): ordered by the
        # group's index and stopped at the first, rather than a min() over every pending letter.
        parts = [
            select(d.c.next_attempt_at.label("due"))
            .where(d.c.action_id == a, d.c.target_id == t, d.c.channel == c, d.c.status == Status.PENDING)
            .where(_consented(now))
            .order_by(d.c.next_attempt_at)
            .limit(1)
            .subquery()
            for a, t, c in groups
        ]
        heads = [select(part.c.due) for part in parts]
        heads.append(select(func.min(d.c.lease_until).label("due")).where(d.c.status == Status.SENDING))
        with self._read() as conn:
            times = [due for query in _compound(heads) for due in conn.scalars(query) if due is not None]
        return min(times, default=None)

    def backlog(self, now: dt.datetime) -> Backlog:
        d = deliveries
        later = d.c.next_attempt_at > now
        with self._read() as conn:
            row = conn.execute(
                select(
                    func.count(case((later, 1))),
                    func.count(case((~later, 1))),
                    func.min(case((later, d.c.next_attempt_at)), type_=UTCDateTime()),
                ).where(d.c.status == Status.PENDING)
            ).one()
        return Backlog(int(row[1]), int(row[0]), row[2])

    # deadlines and controls ----------------------------------------------------------------
    def finish_pending(
        self,
        action_id: str,
        status: Status,
        now: dt.datetime,
        *,
        deadline: dt.datetime,
        by_file: bool = False,
    ) -> int:
        d = deliveries
        with self.engine.begin() as conn:
            return conn.execute(
                update(d)
                .where(
                    d.c.action_id == action_id,
                    or_(
                        d.c.status == Status.PENDING,
                        and_(d.c.status == Status.SENDING, d.c.lease_until < now),
                    ),
                    _still_finished(action_id, status, now, deadline, by_file),
                )
                .values(
                    status=status.value,
                    lease_owner=None,
                    lease_until=None,
                    updated_at=now,
                    **_closed_mark(action_id, status),
                )
            ).rowcount

    def revive(self, action_id: str, from_status: Status, now: dt.datetime, closed: bool = False) -> int:
        d = deliveries
        which = and_(d.c.action_id == action_id, d.c.status == from_status)
        if closed:
            which = and_(which, d.c.last_error == mandates.CLOSED_BY_STAFF)
        with self.engine.begin() as conn:
            # A supporter who changed their terms meanwhile: the letter moves to their new consent
            # if that allows its channel, as the sweep moves a waiting one.
            heir = mandates.successor()
            conn.execute(
                update(d)
                .where(which, ~_consented(now), heir.exists())
                .values(consent_id=heir.scalar_subquery())
            )
            return conn.execute(
                update(d)
                # Not a letter whose supporter withdrew meanwhile, nor one past its retention period
                # (it names no signer): neither can go out again.
                .where(which, _consented(now))
                .values(status=Status.PENDING.value, next_attempt_at=now, updated_at=now)
                .values(**({"last_error": None} if closed else {}))
            ).rowcount

    # reports -----------------------------------------------------------------------------
    def queue_counts(self) -> list[QueueCount]:
        d = deliveries
        oldest = func.min(case((d.c.status == Status.PENDING, d.c.next_attempt_at)))
        with self._read() as conn:
            rows = conn.execute(
                select(d.c.action_id, d.c.target_id, d.c.channel, d.c.status, func.count(), oldest)
                .group_by(d.c.action_id, d.c.target_id, d.c.channel, d.c.status)
                .order_by(d.c.action_id, d.c.target_id, d.c.channel, d.c.status)
            ).all()
        return [QueueCount(r[0], r[1], r[2], r[3], int(r[4]), r[5]) for r in rows]

    def action_counts(self) -> dict[str, dict[str, int]]:
        d = deliveries
        with self._read() as conn:
            rows = conn.execute(
                select(d.c.action_id, d.c.status, func.count()).group_by(d.c.action_id, d.c.status)
            )
            out: dict[str, dict[str, int]] = {}
            for action_id, status, count in rows:
                out.setdefault(action_id, {})[status] = int(count)
        return out

    def sent_counts(self, action_id: str | None = None) -> list[SentCount]:
        d = deliveries
        query = (
            select(d.c.action_id, d.c.target_id, d.c.channel, func.count())
            .where(d.c.status == Status.SENT)
            .group_by(d.c.action_id, d.c.target_id, d.c.channel)
            .order_by(d.c.action_id, d.c.target_id, d.c.channel)
        )
        if action_id:
            query = query.where(d.c.action_id == action_id)
        with self._read() as conn:
            return [SentCount(r[0], r[1], r[2], int(r[3])) for r in conn.execute(query)]

    def fax_pages(self) -> list[tuple[str, str, int]]:
        a = attempts
        query = (
            select(a.c.action_id, a.c.provider, func.sum(a.c.pages))
            .where(a.c.outcome == Outcome.SUBMITTED, a.c.pages.is_not(None))
            .group_by(a.c.action_id, a.c.provider)
            .order_by(a.c.action_id, a.c.provider)
        )
        with self._read() as conn:
            return [(r[0], r[1], int(r[2])) for r in conn.execute(query)]

    def attempts_after(
        self,
        after_id: int,
        limit: int,
        action_id: str | None = None,
        target_id: str | None = None,
    ) -> list[AttemptRow]:
        return self._reports.attempts_page(LogFilter(action_id, target_id), limit, after_id=after_id)

    def requeue_failed(self, action_id: str, now: dt.datetime, delivery_id: int | None = None) -> int:
        d = deliveries
        # As for revive: only a letter whose consent still stands can be sent again.
        failed = and_(d.c.status == Status.FAILED, _consented(now))
        query = update(d).where(d.c.action_id == action_id, failed)
        if delivery_id is not None:
            query = query.where(d.c.id == delivery_id)
        # A fresh start: the attempts already made must not make it give up at once.
        with self.engine.begin() as conn:
            values = {
                "status": Status.PENDING.value,
                "attempts": 0,
                "next_attempt_at": now,
                "updated_at": now,
            }
            return int(conn.execute(query.values(**values)).rowcount)

    def retry_now(self, action_id: str, now: dt.datetime) -> int:
        d = deliveries
        query = update(d).where(
            d.c.action_id == action_id,
            d.c.status == Status.PENDING,
            d.c.attempts > 0,
            d.c.next_attempt_at > now,
        )
        with self.engine.begin() as conn:
            return int(conn.execute(query.values(next_attempt_at=now, updated_at=now)).rowcount)
