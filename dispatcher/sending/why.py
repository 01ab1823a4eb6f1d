"""``dispatcher why`` and the dashboard's delivery page: the store's explanation of one letter,
with what only the actions' files know (``store.explain.Context``): the action's effective
status, whether the catalogue holds it (``forecast.held``: the one definition of held), the
pacing buckets its letter spends and the Message-ID it carries."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from dispatcher.actions.files import load_actions
from dispatcher.actions.model import Action
from dispatcher.actions.planner import effective
from dispatcher.channels import Channel, make_channels
from dispatcher.pacing import Limits
from dispatcher.sending import forecast
from dispatcher.settings import Settings
from dispatcher.store import Store
from dispatcher.store.explain import Context, Explanation


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
    action = load_actions(settings.actions_dir).actions.get(bare.action_id)
    context = _context(store, settings, action, bare, clock)
    return store.reports.explain(delivery_id, clock(), context, redact=redact)


def _context(
    store: Store,
    settings: Settings,
    action: Action | None,
    bare: Explanation,
    clock: Callable[[], dt.datetime],
) -> Context:
    if action is None:  # its file is gone: nothing of it is sent
        return Context(status="unknown", why="no action file")
    now = clock()
    view = effective(action, store.action_states().get(action.id), now)
    held = forecast.hold_reasons(settings, clock, store.action_holds(now)).get(action.id)
    channel = make_channels(settings, store).get(bare.channel)
    keys, line, mid = _channel_facts(channel, action, bare)
    limits = Limits(settings.rate_per_target, settings.burst_per_target, settings.rate_global)
    return Context(view.status.value, view.reason, held, keys, line, limits, mid)


def _channel_facts(
    channel: Channel | None, action: Action, bare: Explanation
) -> tuple[tuple[str, ...], str | None, str | None]:
    """The pacing keys one letter spends, the line it needs alone, an email's Message-ID."""
    if channel is None or bare.target_id not in {t.id for t in action.targets}:
        return (), None, None
    target = action.target(bare.target_id)
    line = channel.line(action, target)
    return channel.pacing_keys(action, target), line, channel.message_id(bare.delivery_id)
