"""Retention: N days after an action closed, its letters stop naming their supporter; the counts
per target stay, other actions are untouched, and the words are gone from the SQLite file."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlalchemy import func, select

from dispatcher.actions import controls
from dispatcher.actions.files import load_actions
from dispatcher.actions.model import Action
from dispatcher.cli import main
from dispatcher.models import ActionState, AttemptResult, Claim, ClaimGroup, Outcome, SupporterRecord, Terms
from dispatcher.people import retention
from dispatcher.people.receipts import in_thread
from dispatcher.settings import Settings
from dispatcher.store import ClaimRequest, Store, open_store
from dispatcher.store.schema import deliveries, fax_media, personal_words
from tests.conftest import cli_env, never_retry
from tests.test_receipts import UNPACED, write_actions

START = dt.datetime(2026, 9, 1, 12, 0, tzinfo=dt.UTC)
CLOSED = dt.datetime(2026, 10, 1, 12, 0, tzinfo=dt.UTC)
DAYS = 30
CLOSING = "free-ilham"  # closed by staff at CLOSED
OPEN = "close-camps"  # active until 2035
WORDS = {CLOSING: "Xyzzy-closed: release him, I beg you.", OPEN: "Plugh-open: close them now."}
ZELDA = SupporterRecord(
    "zelda.q@example.net", "Zelda Quixote", "en", "Ulaanbaatar", "MN", ("all",), START, words=WORDS
)
OTHERS = [
    SupporterRecord(f"p{i}@example.net", f"Person {i}", "en", "", "", ("all",), START) for i in range(3)
]


def attempt(
    store: Store, action_id: str, target_id: str, outcome: Outcome, detail: Callable[[Claim], str]
) -> None:
    group = ClaimGroup(action_id, target_id, "email", (f"email:{target_id}@example.org",))
    claims = store.claim(
        "w", ClaimRequest([group], {"email": 100}, UNPACED), START, dt.timedelta(minutes=1)
    ).claims
    results = [
        AttemptResult(c.delivery_id, action_id, target_id, "email", START, START, outcome, detail=detail(c))
        for c in claims
    ]
    store.record("w", results, never_retry)


def refused(claim: Claim) -> str:
    """A server that quotes the Reply-To and the From's name back (some do)."""
    return f"550 5.7.1 <{claim.signer.email}> not accepted for {claim.signer.name}"


def campaign(store: Store, actions: dict[str, Action]) -> None:
    """Both actions: letters sent, refused (the reply naming the supporter), and still pending;
    a fax PDF of each; then the first action is closed by staff."""
    store.import_supporters([ZELDA, *OTHERS], START)
    for action_id in (CLOSING, OPEN):
        store.plan(action_id, actions[action_id].delivery_pairs(("email",)), START)
    attempt(store, CLOSING, "minister", Outcome.SENT, lambda c: "250 2.0.0 queued")
    attempt(store, CLOSING, "embassy", Outcome.FAILED, refused)
    attempt(store, OPEN, "governor", Outcome.SENT, lambda c: "250 2.0.0 queued")
    attempt(store, OPEN, "consulate", Outcome.FAILED, refused)
    for action_id in (CLOSING, OPEN):
        first = min(_ids(store, action_id))
        store.put_media(f"d{first}-0f0f", f"%PDF fax signed {ZELDA.name}".encode(), START)
    controls.close(store, actions[CLOSING], "staff", CLOSED)  # the pending letters are cancelled


def _ids(store: Store, action_id: str) -> list[int]:
    with store.engine.begin() as conn:  # type: ignore[attr-defined]
        return list(conn.scalars(select(deliveries.c.id).where(deliveries.c.action_id == action_id)))


def named(store: Store, action_id: str) -> int:
    """Letters of the action that still name a supporter or the consent they gave."""
    d = deliveries
    linked = (d.c.supporter_id.is_not(None)) | (d.c.consent_id.is_not(None))
    with store.engine.begin() as conn:  # type: ignore[attr-defined]
        return int(conn.scalar(select(func.count()).where(d.c.action_id == action_id, linked)) or 0)


def counts(store: Store) -> dict[str, Any]:
    """Everything reported: per target, per action and status, the dashboard's and /metrics'."""
    failures = {a: sum(n for _, _, n in store.reports.failure_reasons(a)) for a in (CLOSING, OPEN)}
    return {
        "sent": store.sent_counts(),
        "actions": store.action_counts(),
        "queues": [(q.action_id, q.target_id, q.channel, q.status, q.count) for q in store.queue_counts()],
        "progress": store.reports.progress(),
        "outcomes": sorted(store.reports.outcome_counts()),
        "failures": failures,
    }


def test_after_the_retention_period_the_closed_action_names_no_one(tmp_path: Path, store: Store) -> None:
    actions = load_actions(write_actions(tmp_path)).actions
    campaign(store, actions)
    before = counts(store)
    per_action = len(OTHERS) + 1
    assert named(store, CLOSING) == 3 * per_action and named(store, OPEN) == 2 * per_action

    assert retention.scrub(store, DAYS, actions, CLOSED + dt.timedelta(days=DAYS - 1)) == []  # not yet
    dry = retention.scrub(store, DAYS, actions, CLOSED + dt.timedelta(days=DAYS + 1), dry_run=True)
    assert [(s.action_id, s.closed_at, s.letters) for s in dry] == [(CLOSING, CLOSED, 3 * per_action)]
    assert named(store, CLOSING) == 3 * per_action  # a dry run changes nothing

    done = retention.scrub(store, DAYS, actions, CLOSED + dt.timedelta(days=DAYS + 1))
    assert [(s.action_id, s.letters) for s in done] == [(CLOSING, 3 * per_action)]
    assert named(store, CLOSING) == 0 and named(store, OPEN) == 2 * per_action
    assert counts(store) == before

    # The server's reply stays, without the person in it; the open action's is untouched.
    log = {a: [r.detail for r in store.attempt_log(a) if r.outcome == "failed"] for a in (CLOSING, OPEN)}
    assert "550 5.7.1 <[supporter]> not accepted for [supporter]" in log[CLOSING]
    assert not any(ZELDA.email in d or ZELDA.name in d for d in log[CLOSING])
    assert f"550 5.7.1 <{ZELDA.email}> not accepted for {ZELDA.name}" in log[OPEN]
    reasons = [r for _, _, _, r in store.reports.failed_deliveries(CLOSING)]
    assert reasons and not any(ZELDA.email in r for r in reasons)

    held = store.people.export(ZELDA.email)
    assert held is not None
    assert {x["action_id"] for x in held["letters"]} == {OPEN}
    assert {w["action_id"] for w in held["personal_words"]} == {OPEN}
    with store.engine.begin() as conn:  # type: ignore[attr-defined]
        assert list(conn.scalars(select(personal_words.c.action_id))) == [OPEN]
        media = list(conn.scalars(select(fax_media.c.reference)))
    assert media == [f"d{min(_ids(store, OPEN))}-0f0f"]

    # A scrubbed letter cannot be queued again: there is nobody left to sign it.
    assert store.requeue_failed(CLOSING, CLOSED + dt.timedelta(days=40)) == 0
    # Nor is the action planned again, even for a consent given since: its letters no longer
    # say who wrote, so a new plan would write a second letter to the same official.
    later = CLOSED + dt.timedelta(days=35)
    again = SupporterRecord(
        ZELDA.email, ZELDA.name, "en", "", "", ("all",), later, terms=Terms(text_version="v2")
    )
    store.import_supporters([again], later)  # a new consent, above every watermark
    pairs = actions[CLOSING].delivery_pairs(("email",))
    assert store.plan(CLOSING, pairs, later) == 0
    assert retention.scrub(store, DAYS, actions, CLOSED + dt.timedelta(days=DAYS + 2)) == [
        retention.Scrubbed(CLOSING, CLOSED, 0)
    ]


def test_when_an_action_closed() -> None:
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    data = {"id": "a", "title": "A", "status": "active", "languages": ["en"], "timezone": "UTC"}
    target = {"id": "t", "name": "T", "email": "t@example.org", "channels": ["email"]}
    action = Action.model_validate(data | {"deadline": dt.date(2026, 10, 31), "targets": [target]})
    assert retention.closed_at(action, None, now) == dt.datetime(2026, 11, 1, tzinfo=dt.UTC)  # its deadline
    extended = ActionState("a", None, dt.datetime(2026, 12, 24, tzinfo=dt.UTC), now, "staff")
    assert retention.closed_at(action, extended, now) is None  # open again until then
    by_staff = ActionState("a", "closed", None, dt.datetime(2026, 10, 2, tzinfo=dt.UTC), "staff")
    assert retention.closed_at(action, by_staff, now) == dt.datetime(2026, 10, 2, tzinfo=dt.UTC)
    assert retention.closed_at(None, by_staff, now) == dt.datetime(2026, 10, 2, tzinfo=dt.UTC)  # file gone
    assert retention.closed_at(None, None, now) is None  # no file, nothing stored: kept
    draft = Action.model_validate(
        data | {"status": "draft", "deadline": dt.date(2026, 10, 31), "targets": [target]}
    )
    assert retention.closed_at(draft, None, now) is None


def test_scrub_command_leaves_no_bytes_of_the_closed_actions_words(tmp_path: Path) -> None:
    actions_dir = write_actions(tmp_path)
    actions = load_actions(actions_dir).actions
    env = cli_env(tmp_path, tmp_path, DISPATCHER_RETENTION_DAYS=str(DAYS))
    now = dt.datetime.now(dt.UTC)
    store = open_store(env["DISPATCHER_DATABASE_URL"])
    try:
        campaign(store, actions)
        # Closed 40 days ago (the command runs at the real time).
        store.set_action_state(CLOSING, by="staff", now=now - dt.timedelta(days=40), status="closed")
    finally:
        store.close()
    files = [tmp_path / "d.db", tmp_path / "d.db-wal"]
    secret, kept = WORDS[CLOSING].encode(), WORDS[OPEN].encode()
    assert any(secret in f.read_bytes() for f in files if f.exists())
    runner = CliRunner()
    summary = runner.invoke(main, ["log", "--summary"], env=env).output

    dry = runner.invoke(main, ["supporters", "scrub", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert CLOSING in dry.output and "WOULD SCRUB" in dry.output
    assert any(secret in f.read_bytes() for f in files if f.exists())
    done = runner.invoke(main, ["supporters", "scrub"], env=env)
    assert done.exit_code == 0, done.output
    assert done.output.splitlines()[1].split()[-1] == str(3 * (len(OTHERS) + 1))

    for f in files:
        if f.exists():
            assert secret not in f.read_bytes(), f"the closed action's words are still in {f.name}"
    assert any(kept in f.read_bytes() for f in files if f.exists())  # the open action's are kept
    assert runner.invoke(main, ["log", "--summary"], env=env).output == summary
    assert runner.invoke(main, ["supporters", "scrub"], env=env).output == "nothing to scrub\n"


def test_scrub_command_needs_a_retention_period(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["supporters", "scrub"], env=cli_env(tmp_path))
    assert result.exit_code != 0 and "DISPATCHER_RETENTION_DAYS" in result.output


async def test_the_running_job_is_bounded_and_leaves_clean_actions_alone(
    tmp_path: Path, store: Store
) -> None:
    actions = load_actions(write_actions(tmp_path)).actions
    await asyncio.to_thread(campaign, store, actions)
    settings = Settings.model_validate({"retention_days": DAYS, "actions_dir": tmp_path / "actions"})
    now = CLOSED + dt.timedelta(days=DAYS + 1)
    job = retention.RetentionJob(settings, store, in_thread, lambda: now, lambda: actions)
    assert await job.run() == 3 * (len(OTHERS) + 1)
    assert await job.run() == 0 and job.clean == {CLOSING}  # found clean: skipped for a day
    off = retention.RetentionJob(Settings(), store, in_thread, lambda: now, lambda: actions)
    assert await off.run() == 0  # no retention period: everything is kept
