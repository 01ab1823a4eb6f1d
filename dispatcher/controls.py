"""Staff controls: pause, resume, close and extend an action.

They write to the store, which every running dispatcher re-reads each second, so a control takes
effect within seconds without restarting anything.
"""

from __future__ import annotations

import datetime as dt

from dispatcher.config import Action, ActionStatus, deadline_instant
from dispatcher.planner import effective
from dispatcher.store import Status, Store


class ControlError(Exception):
    pass


def _current(store: Store, action: Action, now: dt.datetime) -> ActionStatus:
    return effective(action, store.action_states().get(action.id), now).status


def pause(store: Store, action: Action, by: str, now: dt.datetime) -> None:
    status = _current(store, action, now)
    if status is not ActionStatus.ACTIVE:
        raise ControlError(f"{action.id} is {status.value}; only an active action can be paused")
    store.set_action_state(action.id, by=by, now=now, status=ActionStatus.PAUSED.value)


def resume(store: Store, action: Action, by: str, now: dt.datetime) -> None:
    status = _current(store, action, now)
    if status is not ActionStatus.PAUSED:
        raise ControlError(f"{action.id} is {status.value}; only a paused action can be resumed")
    store.set_action_state(action.id, by=by, now=now, status=ActionStatus.ACTIVE.value)


def close(store: Store, action: Action, by: str, now: dt.datetime) -> int:
    """Close for good: pending deliveries are cancelled. Returns how many."""
    if _current(store, action, now) is ActionStatus.DRAFT:
        raise ControlError(f"{action.id} is a draft; nothing to close")
    store.set_action_state(action.id, by=by, now=now, status=ActionStatus.CLOSED.value)
    return store.finish_pending(action.id, Status.CANCELLED, now)


def extend(store: Store, action: Action, until: dt.date | dt.datetime, by: str, now: dt.datetime) -> int:
    """Move the deadline later; letters that expired at the old deadline are sent after all."""
    state = store.action_states().get(action.id)
    view = effective(action, state, now)
    new = deadline_instant(until, action.zone)
    if new <= now:
        raise ControlError(f"the new deadline {new.isoformat()} is in the past")
    if new <= view.deadline:
        raise ControlError(f"the new deadline must be after the current one ({view.deadline.isoformat()})")
    if state and state.status == ActionStatus.CLOSED.value:
        raise ControlError(f"{action.id} was closed by {state.updated_by}; a closed action stays closed")
    store.set_action_state(action.id, by=by, now=now, deadline=new)
    return store.revive(action.id, Status.EXPIRED, now)
