"""Staff controls: pause, resume, close and extend an action.

They write to the store, which every running dispatcher re-reads each second, so a control takes
effect within seconds without restarting anything. Each lands in the audit log with who did it and
from where (``cli`` or the web client's address).
"""

from __future__ import annotations

import datetime as dt

from dispatcher.config import Action, ActionStatus, deadline_instant
from dispatcher.planner import effective
from dispatcher.store import Status, Store
from dispatcher.store.accounts import AuditEntry


class ControlError(Exception):
    pass


def _current(store: Store, action: Action, now: dt.datetime) -> ActionStatus:
    return effective(action, store.action_states().get(action.id), now).status


def _audit(
    store: Store, what: str, action: Action, by: str, now: dt.datetime, where: str, detail: str = ""
) -> None:
    store.accounts.audit(AuditEntry(now, by, where, what, action.id, detail))


def pause(store: Store, action: Action, by: str, now: dt.datetime, where: str = "cli") -> None:
    status = _current(store, action, now)
    if status is not ActionStatus.ACTIVE:
        raise ControlError(f"{action.id} is {status.value}; only an active action can be paused")
    store.set_action_state(action.id, by=by, now=now, status=ActionStatus.PAUSED.value)
    _audit(store, "pause", action, by, now, where)


def resume(store: Store, action: Action, by: str, now: dt.datetime, where: str = "cli") -> None:
    status = _current(store, action, now)
    if status is not ActionStatus.PAUSED:
        raise ControlError(f"{action.id} is {status.value}; only a paused action can be resumed")
    store.set_action_state(action.id, by=by, now=now, status=ActionStatus.ACTIVE.value)
    _audit(store, "resume", action, by, now, where)


def close(store: Store, action: Action, by: str, now: dt.datetime, where: str = "cli") -> int:
    """Close for good: pending deliveries are cancelled. Returns how many."""
    if _current(store, action, now) is ActionStatus.DRAFT:
        raise ControlError(f"{action.id} is a draft; nothing to close")
    store.set_action_state(action.id, by=by, now=now, status=ActionStatus.CLOSED.value)
    cancelled = store.finish_pending(action.id, Status.CANCELLED, now)
    _audit(store, "close", action, by, now, where, f"{cancelled} pending cancelled")
    return cancelled


def extend(
    store: Store, action: Action, until: dt.date | dt.datetime, by: str, now: dt.datetime, where: str = "cli"
) -> int:
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
    revived = store.revive(action.id, Status.EXPIRED, now)
    _audit(store, "extend", action, by, now, where, f"to {new.isoformat()}; {revived} expired requeued")
    return revived
