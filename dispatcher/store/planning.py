"""Planning: deliveries written from actions × consents, by a watermark on consent ids."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from sqlalchemy import Connection, and_, func, literal, select, update

from dispatcher import capabilities
from dispatcher.store import Progress, Status
from dispatcher.store.consent import plannable, signs
from dispatcher.store.engine import SqlPart, dialect_insert, exclude_writers
from dispatcher.store.privacy import retained_key
from dispatcher.store.reasons import unsigned_language
from dispatcher.store.schema import consents, deliveries, meta, plan_marks, supporters


def _basis(tags: Sequence[str], language: str | None) -> str:
    """What a pair's watermark was planned under: the action's tags, the letter's language."""
    return hashlib.sha256(f"{sorted(tags)}|{language}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class _Window:
    """One planning batch: consents with ids in (lo, hi] whose scope is one of ``scopes`` and
    who sign letters in ``language`` (None: the letter's language is not known)."""

    scopes: list[str]
    lo: int
    hi: int
    language: str | None
    now: dt.datetime


class SqlPlanning(SqlPart):
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
                        dialect_insert(conn, plan_marks)
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
        unsigned = select(c.c.id).where(~signs(language))
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
            # Below the top read here, nothing can commit later. A long import makes planning
            # wait a round.
            if not exclude_writers(conn, consents, "2s"):
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
                plannable(now, channel, window.language or None),
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
            dialect_insert(conn, deliveries)
            .from_select(columns, chosen)
            .on_conflict_do_nothing()
            # rowcount of INSERT … SELECT is -1 through SQLAlchemy on psycopg 3.
            .returning(deliveries.c.id)
        )
        return len(conn.execute(stmt).all())
