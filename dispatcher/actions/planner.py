"""From actions to deliveries: what is sendable now, and one delivery per supporter × target ×
channel, created idempotently in batches so 100,000 supporters never sit in memory at once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from dispatcher.actions.model import Action
from dispatcher.models import ActionState, ActionStatus, Progress, Status
from dispatcher.store.roles import PlannerStore


@dataclass(frozen=True)
class Effective:
    """An action's status and deadline once staff changes in the store meet the action file."""

    status: ActionStatus
    deadline: dt.datetime
    reason: str

    @property
    def label(self) -> str:
        return f"{self.status.value} ({self.reason})" if self.reason else self.status.value


def effective(action: Action, state: ActionState | None, now: dt.datetime) -> Effective:
    deadline = state.deadline if state and state.deadline else action.deadline_at
    status = action.status
    reason = ""
    # The CLI's pause/resume/close win over the file's active/paused; a file saying draft or
    # closed always wins, so an action can be withdrawn by editing its file.
    if status in (ActionStatus.ACTIVE, ActionStatus.PAUSED) and state and state.status:
        status = ActionStatus(state.status)
        reason = f"by {state.updated_by}"
    if status in (ActionStatus.ACTIVE, ActionStatus.PAUSED) and now >= deadline:
        return Effective(ActionStatus.CLOSED, deadline, "deadline passed")
    return Effective(status, deadline, reason if status is not ActionStatus.ACTIVE else "")


def terminal_status(view: Effective) -> Status | None:
    """What pending deliveries of an action become, if the action can no longer send."""
    if view.status is not ActionStatus.CLOSED:
        return None
    return Status.EXPIRED if view.reason == "deadline passed" else Status.CANCELLED


def finish_action(store: PlannerStore, action: Action, status: Status, now: dt.datetime) -> int:
    """Pending letters of an action that can no longer send become ``status``, if the store's
    action state still agrees (a sweep may run on a view a second old: see ``finish_pending``)."""
    by_file = action.status is ActionStatus.CLOSED
    return store.finish_pending(action.id, status, now, deadline=action.deadline_at, by_file=by_file)


def plan_action(
    store: PlannerStore,
    action: Action,
    channels: tuple[str, ...],
    now: dt.datetime,
    progress: Progress | None = None,
    languages: Mapping[str, str] | None = None,
) -> int:
    """``languages``: target id → the language its letters are written in, so that supporters
    who sign only in some languages are not planned letters in others."""
    return store.plan(
        action.id,
        action.delivery_pairs(channels),
        now,
        progress=progress,
        fallbacks=action.fallbacks(channels),
        tags=action.tags,
        languages=languages,
    )


def sendable(
    actions: Mapping[str, Action],
    states: Mapping[str, ActionState],
    held: Mapping[str, object],
    now: dt.datetime,
) -> dict[str, tuple[Action, dt.datetime]]:
    """Actions that may send now, with their effective deadline; ``held`` failed the check."""
    out: dict[str, tuple[Action, dt.datetime]] = {}
    for action_id, action in actions.items():
        view = effective(action, states.get(action_id), now)
        if view.status is ActionStatus.ACTIVE and action_id not in held:
            out[action_id] = (action, view.deadline)
    return out
