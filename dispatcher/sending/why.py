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
from dispatcher.models import Caps, ClaimGroup, Status
from dispatcher.pacing import Limits
from dispatcher.plans import digests, resolve, spread
from dispatcher.sending import forecast
from dispatcher.sending.digest import is_digest
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
    aim = _aim(store, settings, action, bare, now, view.deadline)
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
        spread=aim,
        digest=digest,
    )


def _aim(
    store: Store,
    settings: Settings,
    action: Action,
    bare: Explanation,
    now: dt.datetime,
    deadline: dt.datetime,
) -> spread.Aim | None:
    """The target's spread to the deadline, as a running dispatcher works it out; None: none."""
    if bare.target_id not in {t.id for t in action.targets}:
        return None
    target = action.target(bare.target_id)
    if resolve.spread_for(action, target, settings.spread) != "even":
        return None
    hours = resolve.default_hours(settings.fax_office_hours)
    calendar = resolve.calendar_for(action, target, bare.channel, hours)
    margin = dt.timedelta(hours=settings.spread_margin_hours)
    group = ClaimGroup(action.id, target.id, bare.channel, ())
    pending = store.pending_counts().get(group.ident, 0)
    pace = spread.pace(pending, calendar, now, deadline - margin)
    if pace is None:
        return None
    return spread.Aim(str(replace(group, pace=pace).spread), pace, deadline, margin)


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


def digest_facts(
    store: Store, settings: Settings, action: Action, bare: Explanation, now: dt.datetime, mid: str | None
) -> tuple[str | None, str | None]:
    """For ``dispatcher why``: the digest a waiting letter goes in ("next digest: 2030-01-08
    10:00 CET, with 41 others"), and the Message-ID it carries (its digest's, once decided)."""
    carried = store.digests.digest_of(bare.delivery_id)
    if carried is not None:
        mid = carried[2]
    if bare.target_id not in {t.id for t in action.targets} or bare.status != Status.PENDING:
        return None, mid
    target = action.target(bare.target_id)
    if bare.channel not in digests.DIGEST_CHANNELS or not is_digest(action, target):
        return None, mid
    if carried is not None:
        return f"in the digest of {carried[0]}, to be sent again ({carried[1]})", mid
    hours = resolve.default_hours(settings.fax_office_hours)
    calendar = resolve.calendar_for(action, target, bare.channel, hours)
    at = resolve.digest_at_for(action, target, settings.digest_at)
    last, coming = digests.latest(calendar, at, now), digests.upcoming(calendar, at, now)
    today = now.astimezone(calendar.zone).date()
    # Today's, if its moment has come but no worker has taken it yet; else the next one, which
    # takes every letter planned until then.
    for moment, planned_by in ((last, None), (coming, now)):
        if moment is None or (planned_by is None and moment.day != today):
            continue
        found = store.digests.waiting(bare.delivery_id, moment.day.isoformat(), planned_by or moment.at)
        if found is not None and not found[0]:
            others = "alone" if found[1] <= 1 else f"with {found[1] - 1} others"
            return f"next digest: {when(moment.at, calendar.zone)}, {others}", mid
    return "next digest: none within two weeks (office hours)", mid


def _channel_facts(
    channel: Channel | None, action: Action, bare: Explanation
) -> tuple[tuple[str, ...], str | None, str | None]:
    """The pacing keys one letter spends, the line it needs alone, an email's Message-ID."""
    if channel is None or bare.target_id not in {t.id for t in action.targets}:
        return (), None, None
    target = action.target(bare.target_id)
    line = channel.line(action, target)
    return channel.pacing_keys(action, target), line, channel.message_id(bare.delivery_id)
