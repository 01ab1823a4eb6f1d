"""Workers' heartbeats and their leases: renewed, handed back, expired, recovered after a crash."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, exists, select, update
from sqlalchemy.sql import ColumnElement

from dispatcher.store import ALIVE, WORKERS_KEPT, Outcome, Status, WorkerBeat
from dispatcher.store.engine import SqlPart, clock_before, dialect_insert
from dispatcher.store.schema import attempts, deliveries, workers


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


def held_by(worker: str) -> ColumnElement[bool]:
    """Still this worker's lease: a letter another worker took back after a freeze, or one staff
    ended meanwhile, is no longer its to change."""
    d = deliveries
    return and_(d.c.lease_owner == worker, d.c.status == Status.SENDING)


def lease_ended(status: Status, now: Any, **values: Any) -> dict[str, Any]:
    """The columns of a letter that leaves its lease for ``status`` at ``now`` (a time or a bound
    parameter): owner and expiry go together, or recovery would take it back as a crashed send."""
    return {"status": status.value, "lease_owner": None, "lease_until": None, "updated_at": now, **values}


def end_each(
    conn: Connection, status: Status, rows: Sequence[Mapping[str, object]], worker: str | None = None
) -> None:
    """End one lease per row, each with its own values, in one statement run for every row.
    A row maps columns to values: ``id`` says which letter, ``updated_at`` when, the other
    columns (the same in every row) what else it keeps. With ``worker``, a lease no longer that
    worker's is left as it is."""
    if not rows:
        return
    d = deliveries
    which = [d.c.id == bindparam("b_id")] + ([held_by(worker)] if worker is not None else [])
    kept: dict[str, Any] = {n: bindparam(f"b_{n}") for n in rows[0] if n not in ("id", "updated_at")}
    conn.execute(
        update(d).where(*which).values(lease_ended(status, bindparam("b_updated_at"), **kept)),
        [{f"b_{name}": value for name, value in row.items()} for row in rows],
    )


class SqlLeases(SqlPart):
    def heartbeat(self, beat: WorkerBeat) -> None:
        values = {k: getattr(beat, k) for k in ("last_seen", "holding", "sent", "stopped_at")}
        with self.engine.begin() as conn:
            upsert = dialect_insert(conn, workers).values(
                worker_id=beat.worker_id, started_at=beat.started_at, **values
            )
            conn.execute(upsert.on_conflict_do_update(index_elements=["worker_id"], set_=values))
            # A worker whose clock runs an hour ahead must not erase every other worker's row.
            forget_before = clock_before(self.engine, beat.last_seen, WORKERS_KEPT)
            conn.execute(delete(workers).where(workers.c.last_seen < forget_before))

    def workers(self) -> list[WorkerBeat]:
        with self._read() as conn:
            rows = conn.execute(select(workers).order_by(workers.c.last_seen.desc()))
            return [WorkerBeat(**r._mapping) for r in rows]

    def recover(self, worker: str, now: dt.datetime, others: bool = True) -> int:
        d = deliveries
        alive_since = clock_before(self.engine, now, ALIVE)
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
                update(d).where(d.c.id.in_([row.id for row in lost])).values(lease_ended(Status.PENDING, now))
            )
        return len(lost)

    def release(self, worker: str, delivery_ids: Sequence[int], now: dt.datetime) -> int:
        if not delivery_ids:
            return 0
        d = deliveries
        with self.engine.begin() as conn:
            return conn.execute(
                update(d)
                .where(d.c.id.in_(list(delivery_ids)), held_by(worker))
                .values(lease_ended(Status.PENDING, now, attempts=d.c.attempts - 1))
            ).rowcount

    def renew(self, worker: str, delivery_ids: Sequence[int], until: dt.datetime) -> int:
        if not delivery_ids:
            return 0
        d = deliveries
        # Only a lease still ours: one another worker took back after a freeze stays theirs.
        mine = and_(d.c.id.in_(list(delivery_ids)), held_by(worker))
        with self.engine.begin() as conn:
            return conn.execute(update(d).where(mine).values(lease_until=until)).rowcount

    def expire_leases_of(self, worker: str, now: dt.datetime) -> int:
        d = deliveries
        with self.engine.begin() as conn:
            return conn.execute(
                update(d).where(held_by(worker)).values(lease_until=now - dt.timedelta(microseconds=1))
            ).rowcount
