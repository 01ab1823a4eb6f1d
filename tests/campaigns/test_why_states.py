"""``dispatcher why`` for every state a letter can be in, on SQLite and PostgreSQL.

Each case drives a planned letter into its state through the paths that put it there in life
(the planner, the store calls a worker makes, the CLI's controls, a staff edit of a file) and
checks that ``dispatcher why`` names the state and its cause; the dashboard's delivery page
renders the same explanation (two cases are read there too).

=========  ==============================================  ======================================
Status     Why it is there                                 Driven by
=========  ==============================================  ======================================
pending    due, a dispatcher running                       plan, a worker's heartbeat
pending    due, no dispatcher running                      plan
pending    due, no dispatcher heard from lately            plan, a heartbeat long ago
pending    waiting for a retry after a server's reply      claim, record(retry, 451)
pending    waiting for the monthly cap                     plan of two actions, claim, record
pending    waiting for pacing: the recipient's bucket      claim at a slow per-target rate
pending    waiting for pacing: the deployment's bucket     claim at a slow global rate
pending    waiting for the fax line (another in flight)    claim, record(submitted)
pending    waiting for a retry: the fax line was busy      claim, record(submitted), resolve(busy)
pending    after an interrupted attempt (lease ran out)    claim (a lease already over), recover
pending    its consent expired, the sweep not yet run      plan, the consent's expiry passes
pending    reopened after a staff close                    ``dispatcher close``, ``reopen``
pending    held: a template does not render                a broken template
pending    held: the action's file has errors              a broken action file
pending    held: the action's file is gone                 the file deleted
pending    paused by staff                                 ``dispatcher pause``
pending    paused by its file                              the file says paused
pending    draft: its file says draft                      the file says draft
pending    closed by its file, not yet swept               the file says closed
pending    deadline passed, not yet swept                  the file's deadline moved back
sending    leased to a live worker                         claim, heartbeat
sending    leased to a worker gone silent                  claim, a heartbeat long ago
sending    leased to a worker that stopped                 claim, a last heartbeat saying stopped
sending    its lease ran out (worker died mid-attempt)     claim (a lease already over)
sending    its lease ran out, its worker still beating     claim (a lease already over), heartbeat
submitted  a fax provider took it, waiting for its word    claim, record(submitted)
sent       sent, with its Message-ID                       claim, record(sent)
failed     failed, with the server's reply                 claim, record(failed, 550)
expired    the deadline passed before it was sent          the planner's sweep past the deadline
cancelled  staff closed the action (by whom)               ``dispatcher close``
cancelled  its file says closed                            the planner's sweep
cancelled  consent withdrawn                               ``dispatcher supporters revoke``
cancelled  consent ended or expired                        the consent sweep (``lapse``)
cancelled  consent narrowed (channel withdrawn)            an import with fewer channels
cancelled  supporter forgotten                             ``dispatcher supporters forget``
cancelled  a language the supporter does not sign         a plan in another language
=========  ==============================================  ======================================
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from dispatcher.accounts import Role
from dispatcher.actions.files import load_actions
from dispatcher.actions.model import Action
from dispatcher.actions.planner import finish_action, plan_action
from dispatcher.models import (
    AttemptResult,
    Claim,
    ClaimGroup,
    Outcome,
    ProviderEvent,
    Status,
    Submission,
    SupporterRecord,
    Terms,
    WorkerBeat,
)
from dispatcher.pacing import Limits
from dispatcher.sending.runtime import utcnow
from dispatcher.store import ClaimRequest, Store, open_store
from tests.campaigns.test_campaign_shapes import settings, supporters, write_actions
from tests.campaigns.test_why import cli, get_as, rewrite, why
from tests.conftest import cli_env, never_retry
from tests.store.test_store_contract import UNPACED
from tests.support.web_client import add_users

LEASE = dt.timedelta(seconds=60)
PRES = ClaimGroup("a", "pres", "email", ("email:pres@example.org",))
FAX = "+442079460000"


@dataclass
class World:
    """Action a (and b, the same official) planned for supporters s0 and s1, by email."""

    root: Path
    db_url: str
    store: Store
    env: dict[str, str]

    def action(self, action_id: str = "a") -> Action:
        return load_actions(self.root / "actions").actions[action_id]

    def plan(self, action_id: str = "a", channel: str = "email", **languages: str) -> None:
        plan_action(self.store, self.action(action_id), (channel,), utcnow(), languages=languages or None)

    def letter(self, n: int = 0, action_id: str = "a") -> int:
        return self.store.reports.find_delivery(action_id, "pres", f"s{n}@example.net")[0]

    def take(
        self,
        n: int = 1,
        limits: Limits = UNPACED,
        group: ClaimGroup = PRES,
        lease: dt.timedelta = LEASE,
    ) -> list[Claim]:
        request = ClaimRequest([group], {group.channel: n}, limits)
        return self.store.claim("w1", request, utcnow(), lease).claims

    def record(self, claim: Claim, outcome: Outcome, **kw: object) -> int:
        now = utcnow()
        result = AttemptResult(
            claim.delivery_id,
            claim.action_id,
            claim.target_id,
            claim.channel,
            now,
            now,
            outcome,
            **kw,  # type: ignore[arg-type]
        )
        self.store.record("w1", [result], never_retry)
        return claim.delivery_id

    def beat(self, worker: str = "w1", ago: float = 0.0, stopped: bool = False) -> None:
        seen = utcnow() - dt.timedelta(seconds=ago)
        self.store.heartbeat(
            WorkerBeat(worker, seen - dt.timedelta(hours=1), seen, 1, 0, seen if stopped else None)
        )

    def edit(self, **changes: object) -> None:
        rewrite(self.env, "a", **changes)

    def join(self, n: int, terms: Terms) -> None:
        """Supporter ``n`` signs up (or changes their consent) with these terms."""
        record: SupporterRecord = supporters(1, start=n)[0]
        self.store.import_supporters([replace(record, terms=replace(terms, replies="direct"))], utcnow())


@pytest.fixture
def world(tmp_path: Path, db_url: str) -> Iterator[World]:
    write_actions(tmp_path, {"a": ["pres"], "b": ["pres"]})
    store = open_store(db_url)
    store.import_supporters(supporters(2), utcnow())
    env = cli_env(
        tmp_path, tmp_path, DISPATCHER_DATABASE_URL=db_url, DISPATCHER_SMTP_URL="smtp://127.0.0.1:9"
    )
    here = World(tmp_path, db_url, store, env)
    here.plan()
    try:
        yield here
    finally:
        store.close()


Drive = Callable[[World], int]  # the letter asked about


def due(w: World) -> int:
    w.beat()
    return w.letter()


def due_nobody_heard(w: World) -> int:
    w.beat(ago=600)
    return w.letter()


def retry(w: World) -> int:
    (claim,) = w.take()
    again = utcnow() + dt.timedelta(hours=1)
    return w.record(claim, Outcome.RETRY, code=451, detail="451 4.3.0 mailbox busy", next_attempt_at=again)


def monthly_cap(w: World) -> int:
    w.join(5, Terms(monthly_cap=1))
    w.plan("a")
    w.plan("b")
    group_b = replace(PRES, action_id="b")
    for group in (PRES, group_b):  # s5's letter of a goes; of b waits for next month
        for claim in w.take(10, group=group):
            if claim.signer.email == "s5@example.net":
                w.record(claim, Outcome.SENT)
    return w.letter(5, "b")


def paced(limits: Limits) -> Drive:
    """One of the two letters claimed; the other waits for a bucket these limits emptied."""

    def drive(w: World) -> int:
        (claim,) = w.take(10, limits=limits)
        return w.letter(1) if claim.delivery_id == w.letter(0) else w.letter(0)

    return drive


def _fax(w: World) -> tuple[int, int]:
    """s0's and s1's faxes to the same line: one a provider took, and the other."""
    w.edit(target={"channels": ["fax"], "fax": FAX})
    w.plan(channel="fax")
    return _taken_fax(w)


def _taken_fax(w: World) -> tuple[int, int]:
    group = ClaimGroup("a", "pres", "fax", (f"fax:{FAX}",), line=FAX)
    (claim,) = w.take(group=group)
    w.record(claim, Outcome.SUBMITTED, submission=Submission("file", "job-7", FAX, 1))
    faxes = [w.store.reports.find_delivery("a", "pres", f"s{n}@example.net")[-1] for n in (0, 1)]
    return claim.delivery_id, next(d for d in faxes if d != claim.delivery_id)


def fax_line(w: World) -> int:
    return _fax(w)[1]


def submitted(w: World) -> int:
    return _fax(w)[0]


def fax_busy(w: World) -> int:
    """The provider's word on the fax it took: the line was busy (tried again in an hour)."""
    fax, _ = _fax(w)
    event = ProviderEvent("file", "job-7", False, utcnow(), reason="the line was engaged", failure="busy")
    w.store.resolve(event, "test", lambda attempts, now: now + dt.timedelta(hours=1))
    return fax


def fax_fallback(gives_up: bool) -> Drive:
    """s0's fax, which falls back to email: tried once and waiting, or given up for good."""

    def drive(w: World) -> int:
        w.edit(target={"channels": ["fax"], "fax": FAX, "fallback": "email"})
        plan_action(w.store, w.action(), ("fax", "email"), utcnow())
        fax, _ = _taken_fax(w)
        event = ProviderEvent("file", "job-7", False, utcnow(), reason="the line was engaged", failure="busy")
        w.store.resolve(
            event, "test", lambda attempts, now: None if gives_up else now + dt.timedelta(hours=1)
        )
        return fax

    return drive


def interrupted(w: World) -> int:
    claim = lease_ran_out(w)
    assert w.store.recover("w2", utcnow()) == 1
    return claim


def reopened(w: World) -> int:
    cli(w.env, "close", "a")
    cli(w.env, "reopen", "a")
    return w.letter()


def broken_template(w: World) -> int:
    (w.root / "templates" / "a" / "en.j2").write_text("{{ broken")
    return w.letter()


def broken_file(w: World) -> int:
    (w.root / "actions" / "a.yaml").write_text("id: a\ntitle: [unclosed\n")
    return w.letter()


def file_gone(w: World) -> int:
    (w.root / "actions" / "a.yaml").unlink()
    return w.letter()


def paused(w: World) -> int:
    cli(w.env, "pause", "a")
    return w.letter()


def edited(**changes: object) -> Drive:
    def drive(w: World) -> int:
        w.edit(**changes)
        return w.letter()

    return drive


def leased(ago: float | None, stopped: bool = False) -> Drive:
    def drive(w: World) -> int:
        (claim,) = w.take()
        if ago is not None:
            w.beat(ago=ago, stopped=stopped)
        return claim.delivery_id

    return drive


def lease_ran_out(w: World) -> int:
    """Claimed by a worker killed at once: its lease is over before anyone asks."""
    (claim,) = w.take(lease=dt.timedelta(microseconds=1))
    return claim.delivery_id


def sent(w: World) -> int:
    (claim,) = w.take()
    return w.record(claim, Outcome.SENT, code=250)


def failed(w: World) -> int:
    (claim,) = w.take()
    return w.record(claim, Outcome.FAILED, code=550, detail="550 5.1.1 no such mailbox")


def swept(becomes: Status, **changes: object) -> Drive:
    """The file edited, then the planner's sweep of what can no longer go."""

    def drive(w: World) -> int:
        w.edit(**changes)
        finish_action(w.store, w.action(), becomes, utcnow())
        return w.letter()

    return drive


def staff_closed(w: World) -> int:
    cli(w.env, "close", "a")
    return w.letter()


def supporter(command: str) -> Drive:
    def drive(w: World) -> int:
        letter = w.letter()
        cli(w.env, "supporters", command, "s0@example.net")
        return letter

    return drive


def expiring(w: World) -> int:
    """s5's letter, planned under a consent that has expired since (the sweep has not run)."""
    w.join(5, Terms(expires_at=utcnow() + dt.timedelta(seconds=1)))
    w.plan()
    time.sleep(1.2)
    return w.letter(5)


def lapsed(w: World) -> int:
    letter = expiring(w)
    assert w.store.people.lapse(utcnow()) == 1
    return letter


def lease_ran_out_worker_alive(w: World) -> int:
    w.beat()
    return lease_ran_out(w)


def narrowed(w: World) -> int:
    """A letter tried once (one never tried is planned afresh under the new consent)."""
    letter = retry(w)
    w.join(0 if letter == w.letter(0) else 1, Terms(channels=("fax",)))
    return letter


def unsigned(w: World) -> int:
    w.join(5, Terms(languages=("en",)))
    w.plan()
    w.plan(pres="de")
    return w.letter(5)


YESTERDAY = (dt.date.today() - dt.timedelta(days=1)).isoformat()
SLOW_TARGET = {"DISPATCHER_RATE_PER_TARGET": "0.001", "DISPATCHER_BURST_PER_TARGET": "1"}
DEPLOYMENT = "the deployment's pace (rate_global)"
SLOW_GLOBAL = {"DISPATCHER_RATE_GLOBAL": "0.001"}
CASES: dict[str, tuple[Drive, tuple[str, ...], dict[str, str]]] = {
    "due": (due, ("due now: due since", "w1 takes it at its next claim"), {}),
    "due, no dispatcher": (lambda w: w.letter(), ("due now", "no dispatcher is running"), {}),
    "due, none heard from": (due_nobody_heard, ("due now", "no dispatcher is running", "w1"), {}),
    "retry": (retry, ("waiting for a retry: attempt 1 failed", "451 4.3.0 mailbox busy"), {}),
    "monthly cap": (monthly_cap, ("waiting for the monthly cap", "monthly cap is reached"), {}),
    "pacing": (
        paced(Limits(rate=0.001, burst=1, global_rate=1e6)),
        ("waiting for pacing: the recipient's pacing allows",),
        SLOW_TARGET,
    ),
    "global pacing": (
        paced(Limits(rate=1e6, burst=1e6, global_rate=0.001)),
        (f"waiting for pacing: {DEPLOYMENT} allows",),
        SLOW_GLOBAL,
    ),
    "fax line": (fax_line, ("waiting for the fax line: delivery", "in flight"), {}),
    "fax busy": (
        fax_busy,
        ("waiting for a retry: attempt 1 failed (busy: the line was engaged)",),
        {},
    ),
    "fax, falls back later": (
        fax_fallback(gives_up=False),
        ("waiting for a retry", "after its last failed attempt it goes by email"),
        {},
    ),
    "fax, fell back": (
        fax_fallback(gives_up=True),
        ("failed: failed at", "it went on by email: letter "),
        {},
    ),
    "interrupted": (interrupted, ("due now", ": interrupted lease of w1 ran out"), {}),
    "reopened": (reopened, ("due now", "its action was set active by"), {}),
    "held: template": (broken_template, ("held: nothing of this action is sent: a × pres × en:",), {}),
    "held: file errors": (
        broken_file,
        ("held: nothing of this action is sent: its action file has errors:", "a.yaml"),
        {},
    ),
    "held: file gone": (file_gone, ("held: nothing of this action is sent: no action file says id a",), {}),
    "paused by staff": (paused, ("paused: the action is paused (by ",), {}),
    "paused by file": (edited(status="paused"), ("paused: the action is paused",), {}),
    "draft": (
        edited(status="draft"),
        ("draft: its file says draft: the letter is sent once it says active",),
        {},
    ),
    "closed by file": (edited(status="closed"), ("closed: the action is closed",), {}),
    "deadline passed": (edited(deadline=YESTERDAY), ("closed: the action is closed (deadline passed)",), {}),
    "sending": (leased(0), ("sending: w1 is sending it, leased until",), {}),
    "sending, worker silent": (
        leased(600),
        ("waiting for its lease to run out: w1 has not been heard from since",),
        {},
    ),
    "sending, worker stopped": (
        leased(600, stopped=True),
        ("waiting for its lease to run out: w1 stopped at",),
        {},
    ),
    "lease ran out": (lease_ran_out, ("waiting for its lease to run out: w1's lease ran out",), {}),
    "lease ran out, worker alive": (
        lease_ran_out_worker_alive,
        ("sending: w1's lease ran out at", "w1 is still heard from"),
        {},
    ),
    "consent expired, not swept": (
        expiring,
        ("stopped by its consent: the consent it was planned under expired at", "no claim takes it"),
        {},
    ),
    "submitted": (submitted, ("submitted: file took it as job job-7",), {}),
    "sent": (sent, ("sent: sent at", "Message-ID: <"), {}),
    "failed": (failed, ("failed: failed at", "550 5.1.1 no such mailbox"), {}),
    "expired": (swept(Status.EXPIRED, deadline=YESTERDAY), ("expired: the action's deadline passed",), {}),
    "cancelled by staff": (
        staff_closed,
        ("cancelled: staff closed the action (a reopen brings it back) (by ",),
        {},
    ),
    "cancelled by file": (
        swept(Status.CANCELLED, status="closed"),
        ("cancelled: the action was closed (its file",),
        {},
    ),
    "withdrawn": (supporter("revoke"), ("cancelled: the supporter withdrew their consent",), {}),
    "lapsed": (lapsed, ("cancelled: the supporter's consent ended or expired",), {}),
    "narrowed": (narrowed, ("cancelled: the supporter's new consent no longer allows this channel",), {}),
    "forgotten": (supporter("forget"), ("cancelled: the supporter asked to be forgotten",), {}),
    "unsigned language": (
        unsigned,
        ("cancelled: the letter's language is one the supporter does not sign",),
        {},
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_why_names_the_state_and_its_cause(world: World, case: str) -> None:
    drive, says, env = CASES[case]
    answer = why(world.env | env, str(drive(world)))
    assert [s for s in says if s not in answer] == [], answer


@pytest.mark.slow
@pytest.mark.parametrize("case", ["failed", "paused by staff"])
async def test_the_delivery_page_says_what_why_says(world: World, case: str) -> None:
    drive, says, _ = CASES[case]
    delivery = drive(world)
    config = settings(world.root, world.env["DISPATCHER_SMTP_URL"], world.db_url)
    add_users(world.store)
    page = (await get_as(config, world.store, Role.OPERATOR, f"/deliveries/{delivery}")).text
    assert [s for s in says if s.split(": ", 1)[-1] not in page] == [], page
