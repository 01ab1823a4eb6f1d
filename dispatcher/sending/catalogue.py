"""The actions a running dispatcher knows: read from their files, checked, and combined with
the staff controls in the store into what may send now.

An action whose letters cannot all render is held, whole, rather than half sent. A letter that
fails to render while sending holds its action until its templates change. So is an action whose
plan leaves a target's office shut until the deadline. Outside a target's office hours its groups
are not offered, and ``opens`` says when the first of them opens.

The claim groups are built again only when what they come from changes: the actions that may
send (files, staff controls, holds, a deadline passing), the channels up, or the clock reaching an
office's opening or closing. Rebuilt every loop they were a tenth of a busy worker's CPU at 300
actions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from dispatcher import capabilities
from dispatcher.actions.files import ActionSet, load_actions
from dispatcher.actions.model import Action
from dispatcher.actions.planner import effective, sendable, terminal_status
from dispatcher.channels import Channel
from dispatcher.letters.faxpdf import FontMissing, find_font
from dispatcher.letters.render import Renderer, RenderError
from dispatcher.models import ActionHold, ActionState, ActionStatus, ClaimGroup, GroupId, HoldKind, Status
from dispatcher.plans import resolve, spread
from dispatcher.plans.calendar import Calendar
from dispatcher.settings import Settings

log = logging.getLogger("dispatcher")

# Groups built for an office that opens or closes past the calendar's horizon are built again
# after this long.
_LOOK_AGAIN = dt.timedelta(days=1)
# Groups built: for which channels up and catalogue version, when, until when, and the groups.
_Built = tuple[tuple[object, ...], dt.datetime, dt.datetime | None, list[ClaimGroup]]


def plan_problems(
    action: Action, channels: tuple[str, ...], now: dt.datetime, settings: Settings
) -> list[resolve.PlanProblem]:
    """What in the action's plan can never send: office hours shut from now to the deadline."""
    pairs = [(action.target(t), via) for t, via in action.claim_pairs(channels)]
    hours = resolve.default_hours(settings.fax_office_hours)
    return resolve.problems(action, pairs, now, action.deadline_at, hours)


def faxes(action: Action, channels: tuple[str, ...]) -> bool:
    """Whether the action sends a letter as a PDF (a fax): the font must be there."""
    return any(capabilities.of(via).pdf for _, via in action.delivery_pairs(channels))


# A file's digest by path, with the size and times it had then: the dashboard stamps both folders
# on every poll, and reading every file each time costs more than the page (T5).
_digests: dict[Path, tuple[tuple[int, int, int, int], bytes]] = {}


def _file_digest(path: Path) -> bytes:
    st = path.stat()
    seen = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    cached = _digests.get(path)
    if cached is not None and cached[0] == seen:
        return cached[1]
    digest = hashlib.sha256(path.read_bytes()).digest()
    _digests[path] = (seen, digest)
    return digest


def stamp(folder: Path) -> str:
    """A digest of the names and contents of a folder's files: changes when staff edit it, and is
    the same on every host with the same files (times differ between checkouts, so they only
    decide whether a file is read again)."""
    digest = hashlib.sha256()
    files = sorted(p for p in (folder.rglob("*") if folder.is_dir() else ()) if p.is_file())
    for path in files:
        name = str(path.relative_to(folder)).encode()
        digest.update(hashlib.sha256(name).digest() + _file_digest(path))
    return digest.hexdigest()


def _restored(action_id: str, reason: str) -> RenderError:
    """A hold read back from the store: its reason as it was first said."""
    problem = RenderError(action_id, "-", None, reason)
    problem.args = (reason,)
    return problem


class Catalogue:
    def __init__(
        self,
        settings: Settings,
        channels: tuple[str, ...],
        clock: Callable[[], dt.datetime],
        *,
        fonts: bool = True,  # False: only the templates (the fax font is the workers' host's)
    ) -> None:
        self.settings = settings
        self.channels = channels
        self.clock = clock
        self.fonts = fonts
        self.loaded = ActionSet()
        self.reloaded = False  # the action files were read: what it holds means something
        self.states: dict[str, ActionState] = {}
        self.held: dict[str, list[RenderError]] = {}
        # Failures while sending, with the template folder as it was then: held until it changes.
        # And when: a staff release voids those before it.
        self._failed: dict[str, tuple[str, RenderError, dt.datetime]] = {}
        self.open: dict[str, tuple[Action, dt.datetime]] = {}
        self.renderer = Renderer(settings.templates_dir)
        self.hours = resolve.default_hours(settings.fax_office_hours)
        self._calendars: dict[GroupId, Calendar] = {}
        # When the first group now outside its office hours opens; None: none waits for that.
        self.opens: dt.datetime | None = None
        self._version = 0  # moves whenever ``open`` may have changed
        self._open_until: dt.datetime | None = None  # the first deadline of an open action
        self._built: _Built | None = None
        # Each group's pace spread to its deadline (plans/spread.py), set by ``pace``; absent:
        # as the caps allow.
        self.paces: dict[GroupId, float] = {}
        self._paced_for: dict[str, dt.datetime] | None = None  # the deadlines they were for

    def reload(self) -> None:
        """Re-read action files and check every letter each action would send."""
        loaded = load_actions(self.settings.actions_dir)
        for error in loaded.errors:
            log.error("action file: %s", error)
        # Check with the renderer that will send: the current one caches templates and would
        # pass one that staff have since broken.
        renderer = Renderer(self.settings.templates_dir)
        held: dict[str, list[RenderError]] = {}
        font_problem = self._font_problem(loaded)
        for action in loaded.actions.values():
            problems = renderer.check(action, self.channels, self.clock().date())
            problems += [
                RenderError(action.id, p.target_id, None, f"plan: {p}")
                for p in plan_problems(action, self.channels, self.clock(), self.settings)
            ]
            if font_problem and faxes(action, self.channels):
                problems = [*problems, RenderError(action.id, "-", None, font_problem)]
            failed = self._failed.get(action.id)
            if failed and failed[0] == self._template_state(action):
                problems = [*problems, failed[1]]
            if problems:
                held[action.id] = problems
                if action.id not in self.held:
                    for problem in problems:
                        log.error("holding %s, nothing will be sent: %s", action.id, problem)
            elif action.id in self.held:
                log.info("%s: checked again, no problems; sending resumes", action.id)
        self._failed = {a: f for a, f in self._failed.items() if a in held}
        self.loaded, self.held, self.renderer = loaded, held, renderer
        self._calendars = {}
        self._paced_for = None  # plans may have changed: pace again at the next refresh
        self.reloaded = True
        self.recompute()

    def _font_problem(self, loaded: ActionSet) -> str | None:
        if not self.fonts or not any(faxes(a, self.channels) for a in loaded.actions.values()):
            return None
        try:
            find_font(self.settings.fax_font)
        except FontMissing as exc:
            return str(exc)
        return None

    def _template_state(self, action: Action) -> str:
        return stamp(self.settings.templates_dir / action.templates)

    def adopt(self, stored: Iterable[ActionHold]) -> None:
        """Holds taken while sending, by this worker before a restart or by another: kept until
        the action's templates change (the next ``reload`` decides) or staff release them."""
        for hold in stored:
            if hold.kind == HoldKind.SENDING and hold.action_id not in self._failed:
                problem = _restored(hold.action_id, hold.reason)
                self._failed[hold.action_id] = (hold.templates, problem, hold.held_at)

    def release(self, releases: Mapping[str, dt.datetime]) -> None:
        """Staff released these actions then: forget failures from before (a failure after the
        release holds the action still); the next ``reload`` checks them again."""
        for action_id, at in releases.items():
            failed = self._failed.get(action_id)
            if failed is not None and failed[2] <= at:
                del self._failed[action_id]
                log.warning("%s: hold released by staff; checked again at the next plan", action_id)

    def holds(self, worker: str, now: dt.datetime) -> dict[str, ActionHold]:
        """What this catalogue holds, as the store keeps it for the dashboard."""
        out = {}
        for action_id, problems in self.held.items():
            failed = self._failed.get(action_id)
            action = self.loaded.actions.get(action_id)
            templates = failed[0] if failed else self._template_state(action) if action else ""
            kind, reason, at = (
                (HoldKind.SENDING, failed[1], failed[2]) if failed else (HoldKind.CHECK, problems[0], now)
            )
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            out[action_id] = ActionHold(action_id, kind, f"{reason}{more}", at, worker, templates)
        return out

    def hold(self, action_id: str, problem: RenderError) -> None:
        """A letter failed to render while sending: nothing more of this action until fixed."""
        if action_id not in self.held:
            log.error("holding %s, nothing more will be sent: %s", action_id, problem)
        self.held.setdefault(action_id, []).append(problem)
        action = self.loaded.actions.get(action_id)
        if action is not None:
            self._failed[action_id] = (self._template_state(action), problem, self.clock())
        self.recompute()

    def set_states(self, states: dict[str, ActionState]) -> None:
        self.states = states
        self.recompute()

    def recompute(self) -> None:
        now = self.clock()
        self.open = sendable(self.loaded.actions, self.states, self.held, now)
        self._open_until = min((deadline for _, deadline in self.open.values()), default=None)
        self._version += 1

    def tick(self) -> None:
        """``recompute`` if a deadline has passed since: nothing else in ``open`` moves with time."""
        if self._open_until is not None and self.clock() >= self._open_until:
            self.recompute()

    def finished(self) -> Iterator[tuple[str, Status]]:
        """Actions that can no longer send, with what their pending deliveries become."""
        now = self.clock()
        for action_id, action in self.loaded.actions.items():
            final = terminal_status(effective(action, self.states.get(action_id), now))
            if final is not None:
                yield action_id, final

    def stopped(self) -> list[str]:
        """Actions paused or closed (by staff, or by their deadline)."""
        now = self.clock()
        stopped = (ActionStatus.PAUSED, ActionStatus.CLOSED)
        return [
            action_id
            for action_id, action in self.loaded.actions.items()
            if effective(action, self.states.get(action_id), now).status in stopped
        ]

    def calendar(self, action: Action, target_id: str, channel: str) -> Calendar:
        """The office hours of the action's target by this channel (kept until the next reload)."""
        ident = (action.id, target_id, channel)
        calendar = self._calendars.get(ident)
        if calendar is None:
            calendar = resolve.calendar_for(action, action.target(target_id), channel, self.hours)
            self._calendars[ident] = calendar
        return calendar

    def groups(self, up: tuple[str, ...], channels: Mapping[str, Channel]) -> list[ClaimGroup]:
        """Every action × target × channel that may send now, on the channels that are up and in
        the target's office hours; ``opens`` is set to when the next one shut now opens. The same
        list (not to be changed) until something it was built from changes."""
        self.tick()
        now, key = self.clock(), (up, id(channels), self._version)
        if self._built is not None:
            built_for, built_at, until, built = self._built
            # A clock set back (a test's, or a host's corrected) builds them again too.
            if built_for == key and built_at <= now and (until is None or now < until):
                return built
        out, until = self._build(up, channels, now)
        self._built = (key, now, until, out)
        return out

    def _build(
        self, up: tuple[str, ...], channels: Mapping[str, Channel], now: dt.datetime
    ) -> tuple[list[ClaimGroup], dt.datetime | None]:
        """The groups, and the first time they may differ (an office opening or closing): what is
        added here that moves with the clock must bring that time forward."""
        out, opens, closes = [], [], []
        for action, _deadline in self.open.values():
            for target_id, name in action.claim_pairs(up):
                if resolve.delivery_for(action, action.target(target_id)) == "digest":
                    continue  # one message a day (sending/digest.py), never letter by letter
                calendar = self.calendar(action, target_id, name)
                if not calendar.is_open(now):
                    opens.append(calendar.next_open(now))
                    continue
                # None: never closes, or not within the horizon it looks (then look again in a day).
                closes.append(calendar.next_close(now) or (None if calendar.always else now + _LOOK_AGAIN))
                target, channel = action.target(target_id), channels[name]
                keys, line = channel.pacing_keys(action, target), channel.line(action, target)
                caps = resolve.caps_for(action, target, name, self.settings.caps())
                pace = self.paces.get((action.id, target_id, name))
                out.append(ClaimGroup(action.id, target_id, name, keys, line, caps, pace))
        self.opens = min((t for t in opens if t is not None), default=None)
        changes = [t or now + _LOOK_AGAIN for t in opens] + [t for t in closes if t is not None]
        return out, min(changes, default=None)

    def pace(self, pending: Mapping[GroupId, int], fresh: bool = True) -> None:
        """Each open group's pace from its pending letters and the open time left to its
        deadline less the margin (``spread: even``): worked out again when the counts are
        ``fresh`` or a deadline moved (staff extend), and kept while it barely moves, so that
        the groups, and the feeder's reading of them, stay the same between refreshes."""
        deadlines = {a.id: d for a, d in self.open.values()}
        if not fresh and deadlines == self._paced_for:
            return
        self._paced_for = deadlines
        now, paces = self.clock(), {}
        margin = dt.timedelta(hours=self.settings.spread_margin_hours)
        for action, deadline in self.open.values():
            for target_id, name in action.claim_pairs(self.channels):
                target = action.target(target_id)
                if resolve.spread_for(action, target, self.settings.spread) != "even":
                    continue
                ident = (action.id, target_id, name)
                calendar = self.calendar(action, target_id, name)
                new = spread.pace(pending.get(ident, 0), calendar, now, deadline - margin)
                kept = spread.steady(self.paces.get(ident), new)
                if kept is not None:
                    paces[ident] = kept
        if paces != self.paces:  # the groups carry them: built again
            self.paces = paces
            self._version += 1
