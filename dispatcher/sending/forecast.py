"""Whether an action's letters are going out at all, when each target's last one goes, and the
forecast in words.

The plan's forecast (``plans.forecast``, from ``lanes`` here) says "on time" only if something
sends: a paused action, a held one (its letters cannot all render, as ``Catalogue`` decides) or
no dispatcher alive (no heartbeat for ``SILENT``) sends nothing, and the forecast says so
instead. Shared by the dashboard, ``dispatcher actions`` and ``dispatcher check``.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from zoneinfo import ZoneInfo

from dispatcher import capabilities
from dispatcher.actions.model import Action
from dispatcher.channels import IMPLEMENTED
from dispatcher.display import deadline_text, when
from dispatcher.models import WORKERS_KEPT, ActionHold, ActionStatus, QueueCount, WorkerBeat
from dispatcher.plans import resolve
from dispatcher.plans.forecast import Lane, Outlook, Remedies, Shortfall, remedies, shortfall
from dispatcher.plans.forecast import forecast as walk
from dispatcher.sending.catalogue import Catalogue, stamp
from dispatcher.settings import Settings
from dispatcher.store import caps

SILENT = dt.timedelta(seconds=20)  # four missed heartbeats: the worker is gone or cut off
FORGET = WORKERS_KEPT  # silent longer: forgotten (each heartbeat also deletes such rows)


def running(workers: Iterable[WorkerBeat], now: dt.datetime) -> list[WorkerBeat]:
    """Workers that have not said they stopped and were heard from within ``SILENT``."""
    return [w for w in workers if w.stopped_at is None and now - w.last_seen <= SILENT]


def silent(workers: Iterable[WorkerBeat], now: dt.datetime) -> list[WorkerBeat]:
    """Workers that never said they stopped but have not been heard from for ``SILENT``: killed,
    frozen, or unable to reach the store; for ``FORGET`` at most, then they are forgotten."""
    return [w for w in workers if w.stopped_at is None and SILENT < now - w.last_seen <= FORGET]


# One catalogue per action and template folder, so a held action is logged when it becomes held,
# not at every refresh of every open dashboard; checked again only when a file in either folder
# changes (or the date: letters carry it), not at every poll (live.js polls every 3 s per tab).
_catalogues: dict[tuple[Path, Path], tuple[tuple[str, str, dt.date], Catalogue]] = {}
_checking = threading.Lock()


def _checked(settings: Settings, clock: Callable[[], dt.datetime]) -> Catalogue:
    """The ``Catalogue``'s own check of the templates, not a copy of it. The fax font is left
    to the workers: it is their host's that matters, and they store what they hold."""
    folders = (settings.actions_dir, settings.templates_dir)
    now = (stamp(settings.actions_dir), stamp(settings.templates_dir), clock().date())
    with _checking:
        before = _catalogues.get(folders)
        if before is not None and before[0] == now:
            return before[1]
        # Every worker sends on these channels (``make_channels``); only the font differs by host.
        catalogue = before[1] if before else Catalogue(settings, IMPLEMENTED, clock, fonts=False)
        catalogue.reload()
        _catalogues[folders] = (now, catalogue)
        return catalogue


def fresh_holds(
    settings: Settings, clock: Callable[[], dt.datetime], stored: Iterable[ActionHold]
) -> dict[str, ActionHold]:
    """The holds workers not forgotten stored (the union: each stores its own), but for actions
    whose templates changed since (the workers check those again and release them at their next
    plan); per action the first taken."""
    return _fresh(settings, _checked(settings, clock), stored)


def _fresh(settings: Settings, catalogue: Catalogue, stored: Iterable[ActionHold]) -> dict[str, ActionHold]:
    actions, out = catalogue.loaded.actions, {}
    stamps: dict[str, str] = {}  # every worker may hold the same action: read its folder once
    for h in sorted(stored, key=lambda h: h.held_at):
        a = h.action_id
        if a not in actions or a in out:
            continue
        folder = actions[a].templates
        if folder not in stamps:
            stamps[folder] = stamp(settings.templates_dir / folder)
        if h.templates == stamps[folder]:
            out[a] = h
    return out


def held(settings: Settings, clock: Callable[[], dt.datetime], stored: Iterable[ActionHold]) -> set[str]:
    """Actions a dispatcher holds or would hold now: the check here, and what workers stored
    (a letter that failed to render for a real signer, a font missing on their host)."""
    catalogue = _checked(settings, clock)
    return set(catalogue.held) | set(_fresh(settings, catalogue, stored))


def hold_reasons(
    settings: Settings, clock: Callable[[], dt.datetime], stored: Iterable[ActionHold]
) -> dict[str, str]:
    """Why each action ``held`` names is held: what a worker stored, else the check here."""
    catalogue = _checked(settings, clock)
    checked = {a: h.reason for a, h in catalogue.holds("", clock()).items()}
    return checked | {a: h.reason for a, h in _fresh(settings, catalogue, stored).items()}


def stalled(status: ActionStatus, is_held: bool, dispatching: bool) -> str | None:
    """Why an active or paused action sends nothing now, or None: it sends."""
    if status is ActionStatus.PAUSED:
        return "paused: nothing is sent"
    if status is not ActionStatus.ACTIVE:
        return None
    if is_held:
        return "held: nothing is sent (see dispatcher check)"
    if not dispatching:
        return "not sending: no dispatcher running"
    return None


Pending = Mapping[tuple[str, str, str], int]  # (action, target, channel) → letters to go


@dataclass(frozen=True)
class Spent:
    """What the store's cap windows open at ``now`` have counted (``reports.cap_usage``)."""

    now: dt.datetime | None = None
    counted: Mapping[str, int] = field(default_factory=dict)

    def on(self, lane: Lane) -> Lane:
        if self.now is None or not self.counted:
            return lane
        hour, day = caps.hour(self.now).label, caps.day(self.now, lane.caps.zone).label
        return replace(
            lane,
            spent_hour={k: self.counted.get(f"{hour}|{k}", 0) for k in (*lane.keys, *lane.domains)},
            spent_today={k: self.counted.get(f"{day}|{k}", 0) for k in lane.keys},
        )


def lanes(
    actions: Mapping[str, Action],
    deadlines: Mapping[str, dt.datetime],
    pending: Pending,
    settings: Settings,
    spent: Spent = Spent(),
) -> list[Lane]:
    """Every action × target × channel with letters to go, with what its plan allows and what
    its caps have already counted."""
    hours = resolve.default_hours(settings.fax_office_hours)
    out, claimed = [], {}
    for (action_id, target_id, channel), letters in pending.items():
        action = actions.get(action_id)
        # Letters to a target since taken out of its file, or by a channel it no longer has, are
        # never claimed (the catalogue offers the file's pairs): no forecast either.
        if action is None or letters <= 0 or action_id not in deadlines:
            continue
        if action_id not in claimed:
            claimed[action_id] = set(action.claim_pairs(tuple(capabilities.KINDS)))
        if (target_id, channel) not in claimed[action_id]:
            continue
        target, able = action.target(target_id), capabilities.of(channel)
        digest = resolve.delivery_for(action, target) == "digest"
        out.append(
            Lane(
                action_id,
                target_id,
                channel,
                letters,
                (f"{channel}:{getattr(target, able.address)}",),
                resolve.caps_for(action, target, channel, settings.caps()),
                resolve.calendar_for(action, target, channel, hours),
                able.line_seconds or 1.0 / settings.rate_per_target,
                deadlines[action_id],
                f"line:{channel}:{getattr(target, able.address)}" if able.line else None,
                resolve.spread_for(action, target, settings.spread),
                dt.timedelta(hours=settings.spread_margin_hours),
                resolve.digest_at_for(action, target, settings.digest_at) if digest else None,
                settings.fax_digest_pages,
            )
        )
    return [spent.on(lane) for lane in out]


def pending_of(queues: Iterable[QueueCount]) -> dict[tuple[str, str, str], int]:
    """The pending letters per action × target × channel."""
    return {
        (q.action_id, q.target_id, q.channel): q.count for q in queues if q.status == "pending" and q.count
    }


def outlooks(
    actions: Mapping[str, Action],
    deadlines: Mapping[str, dt.datetime],
    pending: Pending,
    settings: Settings,
    now: dt.datetime,
    counted: Mapping[str, int] | None = None,
) -> list[Outlook]:
    """Every target × channel's forecast, the deployment's lanes walked together (a domain's
    and an address's caps are shared across actions), from what the caps ``counted`` so far."""
    found = lanes(actions, deadlines, pending, settings, Spent(now, counted or {}))
    return walk(found, now, settings.rate_global)


def described(
    outlook: Outlook, found: Sequence[Outlook], zone: ZoneInfo, now: dt.datetime, settings: Settings
) -> str:
    """The lane's forecast in words; where it misses, why and what would fix it (each remedy
    tried on a forecast of the lanes it shares a limit with)."""
    if outlook.fits:
        return lane_text(outlook, zone)
    lane, lanes = outlook.lane, [o.lane for o in found]
    why = shortfall(lane, lanes, now), remedies(lanes, lane, now, settings.rate_global, settings.digest_at)
    return lane_text(outlook, zone, why)


def lane_text(outlook: Outlook, zone: ZoneInfo, advised: tuple[Shortfall, Remedies] | None = None) -> str:
    """One target's forecast: when its last letter goes, or why it misses and what would fix it."""
    lane = outlook.lane
    head = f"{lane.target_id} ({lane.channel})"
    letters = f"{lane.letters} letter{'s' if lane.letters != 1 else ''}"
    how = " in the digest" if lane.digest_at is not None else ""
    if outlook.fits or advised is None:
        last = when(outlook.last, zone) if outlook.last else "not within 120 days"
        tight = ", no room for the spread's margin" if outlook.rushed and outlook.fits else ""
        return f"{head}: {letters}, the last{how} {last}{tight}"
    short, fixes = advised
    deadline = deadline_text(lane.deadline, zone)
    if lane.digest_at is not None:
        said = f"{head}: {letters}, the next digest goes after the deadline {deadline}"
    else:
        need, left = _amount(short.need), _amount(short.left)
        said = f"{head}: {letters} need {need} {short.unit} at {short.rate}; {left} left"
        said += f" before the deadline {deadline}"
    return f"{said} → {_fixes(fixes, zone)}"


def _amount(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def _fixes(fixes: Remedies, zone: ZoneInfo) -> str:
    said = [f"raise {name} to {value}" for name, value in fixes.caps]
    if fixes.digest:
        said.append("use delivery: digest")
    if fixes.extend_to is not None:
        said.append(f"extend to {_day(fixes.extend_to, zone)}")
    return ", or ".join(said) if said else "nothing in the plan would: extend by months, or split the action"


def _day(t: dt.datetime, zone: ZoneInfo) -> str:
    """The date to give ``dispatcher extend``: its deadline is the end of that day, so the day of ``t``."""
    return t.astimezone(zone).date().isoformat()


def text(pending: bool, late: int, last: dt.datetime | None, zone: ZoneInfo, why_not: str | None) -> str:
    """The action's forecast in words: "-" with nothing pending, else why nothing sends, or
    how many targets miss the deadline, or when its last letter goes."""
    if not pending:
        return "-"
    if why_not:
        return why_not
    if late:
        return f"at risk: {late} target{'s miss' if late != 1 else ' misses'} the deadline"
    return f"on time (last letter {when(last, zone)})"
