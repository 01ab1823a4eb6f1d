"""Actions' runtime state: staff's status and deadline, holds, and what controls do to letters."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, and_, case, delete, exists, func, literal, or_, select, true, update
from sqlalchemy.sql import ColumnElement

from dispatcher.models import HoldKind
from dispatcher.store import WORKERS_KEPT, ActionHold, ActionState, Status, mandates, released_before
from dispatcher.store.consent import letter_live
from dispatcher.store.engine import SqlPart, dialect_insert
from dispatcher.store.leases import lease_ended
from dispatcher.store.schema import (
    UTCDateTime,
    action_holds,
    action_state,
    deliveries,
    hold_releases,
    workers,
)


def _releases(conn: Connection) -> dict[str, dt.datetime]:
    rows = conn.execute(select(hold_releases)).all()
    return {r.action_id: r.released_at for r in rows}


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


class SqlControls(SqlPart):
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
                upsert = dialect_insert(conn, h).values(
                    action_id=hold.action_id, worker=worker, held_at=hold.held_at, **changes
                )
                conn.execute(
                    upsert.on_conflict_do_update(index_elements=["action_id", "worker"], set_=changes)
                )

    def release_holds(self, action_id: str, now: dt.datetime) -> int:
        with self.engine.begin() as conn:
            dropped = conn.execute(delete(action_holds).where(action_holds.c.action_id == action_id))
            when = {"released_at": now}
            upsert = dialect_insert(conn, hold_releases).values(action_id=action_id, **when)
            conn.execute(upsert.on_conflict_do_update(index_elements=["action_id"], set_=when))
            return int(dropped.rowcount)

    def hold_releases(self) -> dict[str, dt.datetime]:
        with self._read() as conn:
            return _releases(conn)

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
        stmt = dialect_insert(self.engine, action_state).values(action_id=action_id, **changes)
        stmt = stmt.on_conflict_do_update(index_elements=["action_id"], set_=changes)
        with self.engine.begin() as conn:
            conn.execute(stmt)

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
                .values(lease_ended(status, now, **_closed_mark(action_id, status)))
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
                .where(which, ~letter_live(now), heir.exists())
                .values(consent_id=heir.scalar_subquery())
            )
            return conn.execute(
                update(d)
                # Not a letter whose supporter withdrew meanwhile, nor one past its retention period
                # (it names no signer): neither can go out again.
                .where(which, letter_live(now))
                .values(status=Status.PENDING.value, next_attempt_at=now, updated_at=now)
                .values(**({"last_error": None} if closed else {}))
            ).rowcount

    def requeue_failed(self, action_id: str, now: dt.datetime, delivery_id: int | None = None) -> int:
        d = deliveries
        # As for revive: only a letter whose consent still stands can be sent again.
        failed = and_(d.c.status == Status.FAILED, letter_live(now))
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
