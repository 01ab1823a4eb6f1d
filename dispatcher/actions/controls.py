"""Staff controls: pause, resume, close, reopen, extend and release an action.

A close cancels the pending letters; staff can take it back with ``reopen`` within
``REOPEN_GRACE`` (a close clicked by mistake), after which it is final.

They write to the store, which every running dispatcher re-reads each second, so a control takes
effect within seconds without restarting anything. Each lands in the audit log with who did it and
from where (``cli`` or the web client's address).
"""

from __future__ import annotations

import datetime as dt

from dispatcher.actions.model import Action, deadline_instant
from dispatcher.actions.planner import effective, finish_action
from dispatcher.models import ActionState, ActionStatus, Status
from dispatcher.store import Store
from dispatcher.store.accounts import AuditEntry, entries

REOPEN_GRACE = dt.timedelta(hours=24)
# The operators' controls: failed letters back to the queue, waiting retries due now. Neither can
# send anything for an action that is closed or a draft.
REQUEUES = ("retry-now", "requeue")
# The close's audit line says so when the action was paused: reopen brings it back paused.
WAS_PAUSED = "; it was paused"


class ControlError(Exception):
    pass


def _current(store: Store, action: Action, now: dt.datetime) -> ActionStatus:
    return effective(action, store.action_states().get(action.id), now).status


def _audit(
    store: Store, what: str, action: Action, by: str, now: dt.datetime, where: str, detail: str = ""
) -> None:
    store.accounts.audit(AuditEntry(now, by, where, what, action.id, detail))


# Pause and resume are one move between active and paused, each way: from, to, who may make it.
_SWITCHES = {
    "pause": (ActionStatus.ACTIVE, ActionStatus.PAUSED, "an active action can be paused"),
    "resume": (ActionStatus.PAUSED, ActionStatus.ACTIVE, "a paused action can be resumed"),
}


def _switch(store: Store, action: Action, by: str, now: dt.datetime, where: str, verb: str) -> None:
    source, target, allowed = _SWITCHES[verb]
    status = _current(store, action, now)
    if status is not source:
        raise ControlError(f"{action.id} is {status.value}; only {allowed}")
    store.set_action_state(action.id, by=by, now=now, status=target.value)
    _audit(store, verb, action, by, now, where)


def pause(store: Store, action: Action, by: str, now: dt.datetime, where: str = "cli") -> None:
    _switch(store, action, by, now, where, "pause")


def resume(store: Store, action: Action, by: str, now: dt.datetime, where: str = "cli") -> None:
    _switch(store, action, by, now, where, "resume")


def close(store: Store, action: Action, by: str, now: dt.datetime, where: str = "cli") -> int:
    """Pending deliveries are cancelled; ``reopen`` within REOPEN_GRACE. Returns how many."""
    status = _current(store, action, now)
    if status is ActionStatus.DRAFT:
        raise ControlError(f"{action.id} is a draft; nothing to close")
    if status is ActionStatus.CLOSED:  # a second close would move the reopen window
        raise ControlError(f"{action.id} is already closed")
    store.set_action_state(action.id, by=by, now=now, status=ActionStatus.CLOSED.value)
    cancelled = finish_action(store, action, Status.CANCELLED, now)
    paused = WAS_PAUSED if status is ActionStatus.PAUSED else ""
    _audit(store, "close", action, by, now, where, f"{cancelled} pending cancelled{paused}")
    return cancelled


def _before_close(store: Store, action: Action, state: ActionState) -> ActionStatus:
    """Paused if the close's own audit line says it was (else active: nothing says otherwise)."""
    horizon = state.updated_at - dt.timedelta(hours=1)  # audit lines are stamped by many clocks
    for entry in entries(store.accounts):
        if entry.at < horizon:
            break
        if entry.subject == action.id and entry.action == "close" and entry.at == state.updated_at:
            return ActionStatus.PAUSED if entry.detail.endswith(WAS_PAUSED) else ActionStatus.ACTIVE
    return ActionStatus.ACTIVE


def reopen_until(action: Action, state: ActionState | None, now: dt.datetime) -> dt.datetime | None:
    """Until when staff may reopen the action, if they closed it and may still take it back."""
    # A file saying draft or closed wins over any control: nothing to take back then.
    overridable = action.status in (ActionStatus.ACTIVE, ActionStatus.PAUSED)
    if state is None or state.status != ActionStatus.CLOSED.value or not overridable:
        return None
    until = min(state.updated_at + REOPEN_GRACE, state.deadline or action.deadline_at)
    return until if now < until else None


def reopen(store: Store, action: Action, by: str, now: dt.datetime, where: str = "cli") -> int:
    """Take back a close made within REOPEN_GRACE: active or paused as it was before, the letters
    cancelled while it was closed pending again (not those whose supporter withdrew since).
    Returns how many."""
    state = store.action_states().get(action.id)
    if state is None or state.status != ActionStatus.CLOSED.value:
        raise ControlError(f"{action.id} was not closed by staff; nothing to reopen")
    if reopen_until(action, state, now) is None:
        hours = REOPEN_GRACE.total_seconds() / 3600
        raise ControlError(
            f"{action.id} was closed by {state.updated_by} at {state.updated_at.isoformat()}; "
            f"a close can be taken back only within {hours:g} hours and before the deadline"
        )
    status = _before_close(store, action, state)
    store.set_action_state(action.id, by=by, now=now, status=status.value)
    revived = store.revive(action.id, Status.CANCELLED, now, closed=True)
    _audit(store, "reopen", action, by, now, where, f"{revived} cancelled requeued; {status.value}")
    return revived


def extend(
    store: Store, action: Action, until: dt.date | dt.datetime, by: str, now: dt.datetime, where: str = "cli"
) -> int:
    """Move the deadline later; letters that expired at the old deadline are sent after all."""
    state = store.action_states().get(action.id)
    view = effective(action, state, now)
    try:
        new = deadline_instant(until, action.zone)
    except OverflowError:  # a date at the calendar's ends, moved to the action's zone
        raise ControlError(f"the new deadline {until.isoformat()} is out of range") from None
    if new <= now:
        raise ControlError(f"the new deadline {new.isoformat()} is in the past")
    if new <= view.deadline:
        raise ControlError(f"the new deadline must be after the current one ({view.deadline.isoformat()})")
    if state and state.status == ActionStatus.CLOSED.value:
        hint = "; reopen it first" if reopen_until(action, state, now) else "; a closed action stays closed"
        raise ControlError(f"{action.id} was closed by {state.updated_by}{hint}")
    store.set_action_state(action.id, by=by, now=now, deadline=new)
    revived = store.revive(action.id, Status.EXPIRED, now)
    _audit(store, "extend", action, by, now, where, f"to {new.isoformat()}; {revived} expired requeued")
    return revived


def available(action: Action, state: ActionState | None, now: dt.datetime) -> tuple[str, ...]:
    """The controls that can apply to the action now, as the dashboard offers them."""
    view = effective(action, state, now)
    if view.status is ActionStatus.ACTIVE:
        return ("pause", "close", "extend", *REQUEUES)
    if view.status is ActionStatus.PAUSED:
        return ("resume", "close", "extend", *REQUEUES)
    if reopen_until(action, state, now) is not None:
        return ("reopen",)
    if view.status is ActionStatus.CLOSED and view.reason == "deadline passed":
        return ("extend",)  # letters expired at the deadline are sent after all
    return ()


def release(store: Store, action: Action, by: str, now: dt.datetime, where: str = "cli") -> int:
    """Drop every worker's hold of the action (a letter failed to render while sending, so it
    stays held until its templates change): each worker checks it again at its next plan and
    holds it again only if it still fails. Returns how many holds were dropped."""
    released = store.release_holds(action.id, now)
    if not released:
        raise ControlError(f"{action.id} is not held by any dispatcher; nothing to release")
    _audit(store, "release", action, by, now, where, f"{released} worker hold(s) dropped")
    return released
