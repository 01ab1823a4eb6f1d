"""``dispatcher why`` and the dashboard's delivery page: the store's explanation of one letter,
with what only the actions' files know (``store.explain.Context``): the action's effective
status, whether the catalogue holds it (``forecast.held``: the one definition of held), the
pacing buckets its letter spends and the Message-ID it carries."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from dispatcher.actions.files import ActionSet, load_actions
from dispatcher.actions.model import Action
from dispatcher.actions.planner import effective
from dispatcher.channels import Channel, make_channels
from dispatcher.display import when
from dispatcher.models import Caps
from dispatcher.pacing import Limits
from dispatcher.plans import resolve
from dispatcher.sending import forecast
from dispatcher.sending.digest import digest_facts
from dispatcher.settings import Settings
from dispatcher.store import Store
from dispatcher.store.explain import Context, Explanation, at


def explain(
    store: Store,
    settings: Settings,
    delivery_id: int,
    clock: Callable[[], dt.datetime],
    *,
    redact: bool = False,
) -> Explanation | None:
    bare = store.reports.explain(delivery_id, clock(), Context(), redact=redact)
    if bare is None:
        return None
    loaded = load_actions(settings.actions_dir)
    action = loaded.actions.get(bare.action_id)
    context = _context(store, settings, action, bare, clock) if action else _missing(loaded, bare.action_id)
    return store.reports.explain(delivery_id, clock(), _with_workers(store, context, clock()), redact=redact)


def _missing(loaded: ActionSet, action_id: str) -> Context:
    """No action file loads with this id: nothing of it is sent until one does."""
    errors = [str(e) for e in loaded.errors if Path(e.file).stem == action_id]
    if errors:
        return Context(status="unknown", held=f"its action file has errors: {'; '.join(errors)}")
    return Context(status="unknown", held=f"no action file says id {action_id}")


def _with_workers(store: Store, context: Context, now: dt.datetime) -> Context:
    beats = tuple(store.workers())
    return replace(context, workers=beats, running=tuple(w.worker_id for w in forecast.running(beats, now)))


def _context(
    store: Store,
    settings: Settings,
    action: Action,
    bare: Explanation,
    clock: Callable[[], dt.datetime],
) -> Context:
    now = clock()
    state = store.action_states().get(action.id)
    view = effective(action, state, now)
    held = forecast.hold_reasons(settings, clock, store.action_holds(now)).get(action.id)
    channel = make_channels(settings, store).get(bare.channel)
    keys, line, mid = _channel_facts(channel, action, bare)
    limits = Limits(settings.rate_per_target, settings.burst_per_target, settings.rate_global)
    control = (
        f"set {state.status} by {state.updated_by} at {at(state.updated_at)}"
        if state and state.status
        else ""
    )
    opens = _opens(settings, action, bare, now)
    caps = _caps(settings, action, bare)
    digest, mid = digest_facts(store, settings, action, bare, now, mid)
    return Context(
        view.status.value,
        view.reason,
        held,
        keys,
        line,
        limits,
        mid,
        control=control,
        opens=opens,
        caps=caps,
        digest=digest,
    )


def _caps(settings: Settings, action: Action, bare: Explanation) -> Caps:
    """The caps the target's letters have by this channel: its plan's, else the settings'."""
    if bare.target_id not in {t.id for t in action.targets}:
        return Caps()
    return resolve.caps_for(action, action.target(bare.target_id), bare.channel, settings.caps())


def _opens(settings: Settings, action: Action, bare: Explanation, now: dt.datetime) -> str | None:
    """When the target's office hours open, in its zone, if they are shut now."""
    if bare.target_id not in {t.id for t in action.targets}:
        return None
    hours = resolve.default_hours(settings.fax_office_hours)
    calendar = resolve.calendar_for(action, action.target(bare.target_id), bare.channel, hours)
    if calendar.is_open(now):
        return None
    opens = calendar.next_open(now)
    return f"{when(opens, calendar.zone)} ({calendar.zone.key})" if opens else "after the deadline"


def _channel_facts(
    channel: Channel | None, action: Action, bare: Explanation
) -> tuple[tuple[str, ...], str | None, str | None]:
    """The pacing keys one letter spends, the line it needs alone, an email's Message-ID."""
    if channel is None or bare.target_id not in {t.id for t in action.targets}:
        return (), None, None
    target = action.target(bare.target_id)
    line = channel.line(action, target)
    return channel.pacing_keys(action, target), line, channel.message_id(bare.delivery_id)
