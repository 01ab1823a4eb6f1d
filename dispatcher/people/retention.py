"""Retention: ``retention_days`` after an action closed, its letters stop saying who signed them.

An action is closed from the earlier of: staff closing it (``action_state`` status ``closed``,
at its ``updated_at``: only a reopen within ``controls.REOPEN_GRACE``, 24 hours, changes it
afterwards, and makes the action open again; ``retention_days`` is at least 1, so nothing is
scrubbed while a close can still be taken back), and its effective deadline passing (the
store's extension, else the file's). An action whose file says ``closed`` counts from its
deadline, the only time known for it. An action whose file is gone is judged on what the store
holds (a staff close, an extended deadline): without either, its close time is unknown and its
letters are kept. An extension after the period ran out does not bring the scrubbed letters
back: they no longer name anyone to send them for.

What is scrubbed, the counts that stay and how the bytes go: see store/privacy.py.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass

from dispatcher.actions.model import Action
from dispatcher.actions.planner import effective
from dispatcher.models import ActionState, ActionStatus
from dispatcher.people.receipts import Call
from dispatcher.settings import Settings
from dispatcher.store import Store

log = logging.getLogger("dispatcher")

EVERY = 600.0  # seconds between runs in a running dispatcher
BATCH = 500  # letters per transaction
BUDGET = 2000  # letters per scheduled run: the store thread is shared with the senders
RECHECK = dt.timedelta(days=1)  # how long an action found clean is skipped by the running job


@dataclass(frozen=True)
class Scrubbed:
    action_id: str
    closed_at: dt.datetime
    letters: int  # scrubbed now (or, in a dry run, that would be)


def closed_at(action: Action | None, state: ActionState | None, now: dt.datetime) -> dt.datetime | None:
    """When the action closed, or None while it is open (or its close time is unknown)."""
    if action is not None:
        view = effective(action, state, now)
        if view.status is not ActionStatus.CLOSED:
            return None
        deadline: dt.datetime | None = view.deadline
    else:
        deadline = state.deadline if state else None
    by_staff = state.updated_at if state and state.status == ActionStatus.CLOSED.value else None
    passed = deadline if deadline is not None and deadline <= now else None
    return min((t for t in (by_staff, passed) if t is not None), default=None)


def expired(
    days: int, actions: Mapping[str, Action], states: Mapping[str, ActionState], now: dt.datetime
) -> Iterator[tuple[str, dt.datetime]]:
    """Actions closed more than ``days`` ago, with when they closed, oldest id first."""
    for action_id in sorted(set(actions) | set(states)):
        closed = closed_at(actions.get(action_id), states.get(action_id), now)
        if closed is not None and closed + dt.timedelta(days=days) <= now:
            yield action_id, closed


def scrub(
    store: Store,
    days: int,
    actions: Mapping[str, Action],
    now: dt.datetime,
    *,
    budget: int | None = None,
    dry_run: bool = False,
    skip: Collection[str] = (),
) -> list[Scrubbed]:
    """Scrub every action whose retention period ran out, at most ``budget`` letters in all
    (None: every one). A dry run counts what would be scrubbed and changes nothing."""
    out: list[Scrubbed] = []
    left = budget
    for action_id, closed in expired(days, actions, store.action_states(), now):
        if action_id in skip:
            continue
        letters = store.privacy.scrubbable(action_id) if dry_run else _scrub_action(store, action_id, left)
        out.append(Scrubbed(action_id, closed, letters))
        if left is not None:
            left -= letters
            if left <= 0:
                break
    return out


def _scrub_action(store: Store, action_id: str, left: int | None) -> int:
    """Batch after batch, each its own short transaction, until none is left (or the budget)."""
    done = 0
    while left is None or done < left:
        size = BATCH if left is None else min(BATCH, left - done)
        got = store.privacy.scrub(action_id, size)
        done += got
        if got < size:
            break
    return done


class RetentionJob:
    """The dispatcher's periodic run: bounded, and an action found clean is left alone for a
    day (a late fax report can still add a fallback letter to a closed action)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        call: Call,
        clock: Callable[[], dt.datetime],
        actions: Callable[[], Mapping[str, Action]],
    ) -> None:
        self.settings, self.store, self.call, self.clock, self.actions = settings, store, call, clock, actions
        self.clean: set[str] = set()
        self._cleared = clock()

    async def run(self) -> int:
        days = self.settings.retention_days
        if days is None:
            return 0
        now = self.clock()
        if now - self._cleared >= RECHECK:
            self.clean.clear()
            self._cleared = now
        done = await self.call(
            scrub, self.store, days, self.actions(), now, budget=BUDGET, skip=frozenset(self.clean)
        )
        for row in done:
            if row.letters:
                log.info(
                    "%s: %d letters no longer name their supporter (retention)", row.action_id, row.letters
                )
            else:
                self.clean.add(row.action_id)
        return sum(row.letters for row in done)
