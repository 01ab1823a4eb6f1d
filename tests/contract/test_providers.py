"""The provider contract: every fax provider, through its adapter (``providers.py``), meets each
scenario the same way. What one provider alone does (its signature scheme, its quirks) is
tested in its own ``tests/test_fax_<name>.py``."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from dispatcher.actions import controls
from dispatcher.actions.files import load_actions
from dispatcher.channels.fax import fax_reference
from dispatcher.sending.runtime import utcnow
from dispatcher.settings import Settings
from tests.contract.providers import DIALS, REFUSES, WEBHOOKS, Adapter, able
from tests.contract.world import ACTION, EMBASSY, MINISTER, provider_world, until
from tests.fax_servers.control import Outcome, Refusal
from tests.test_faxpdf import MISSING
from tests.test_kill import dispatcher_executable, stop, wait_until

pytestmark = pytest.mark.skipif(bool(MISSING), reason=MISSING)
BOTH = {"minister": MINISTER, "embassy": EMBASSY}
# The fax backoff as deployed (20 minutes): a retry that must wait, waits beyond the test.
SLOW_RETRIES = {name: Settings.model_fields[name].default for name in ("fax_retry_initial", "fax_retry_max")}


@pytest.mark.parametrize("adapter", able())
async def test_a_fax_is_delivered_once_and_its_news_reaches_us(tmp_path: Path, adapter: Adapter) -> None:
    with provider_world(tmp_path, adapter) as w:
        async with w.running():  # HTTP providers are polled once a minute: their webhook must tell
            await until(lambda: w.status() == {"minister": "sent"}, "the news of the fax")
        submitted, sent = rows = w.rows("minister")
        [job] = w.fake.job_ids(MINISTER)
        reference = fax_reference(w.store.instance_secret(), submitted.delivery_id)
        await until(lambda: len(w.fake.final_answers(MINISTER)) == int(WEBHOOKS in adapter.can), "our answer")
    assert [r.outcome for r in rows] == ["submitted", "sent"]
    assert {(r.provider, r.job_id, r.destination) for r in rows} == {(adapter.name, job, MINISTER)}
    assert submitted.pages == 1 and sent.worker == adapter.words.confirmed_by
    assert sent.pages == (None if adapter.name == "file" else 1)  # the file provider counts nothing
    # Our reference rode along, so that after a crash the fax is found rather than sent again.
    assert w.fake.references(MINISTER) == [reference]
    assert w.fake.job_states(MINISTER) == [adapter.words.delivered]
    assert w.fake.final_answers(MINISTER) == ([200] if WEBHOOKS in adapter.can else [])


@pytest.mark.parametrize("adapter", able(DIALS))
async def test_busy_is_dialled_again_as_a_new_fax_and_delivered(tmp_path: Path, adapter: Adapter) -> None:
    with provider_world(tmp_path, adapter) as w:
        w.fake.outcome(MINISTER, Outcome.BUSY)
        async with w.running():
            await until(lambda: w.status() == {"minister": "sent"}, "the second fax", within=15)
        rows, jobs = w.rows("minister"), w.fake.job_ids(MINISTER)
    assert [r.outcome for r in rows] == ["submitted", "retry", "submitted", "sent"]
    assert rows[1].detail == adapter.words.details[Outcome.BUSY]
    # The failed first fax is not taken for a fax already on its way: a second one is sent.
    assert w.fake.job_states(MINISTER) == [adapter.words.states[Outcome.BUSY], adapter.words.delivered]
    assert len(set(w.fake.references(MINISTER))) == 1  # one reference per letter, on every fax
    assert [r.job_id for r in rows] == [jobs[0], jobs[0], jobs[1], jobs[1]]


@pytest.mark.parametrize("adapter", able(DIALS))
async def test_no_answer_waits_for_a_retry_and_not_a_fax_line_fails_for_good(
    tmp_path: Path, adapter: Adapter
) -> None:
    with provider_world(tmp_path, adapter, BOTH, **SLOW_RETRIES) as w:
        w.fake.outcome(MINISTER, Outcome.NO_ANSWER)
        w.fake.outcome(EMBASSY, Outcome.NOT_A_FAX)
        await w.run_once()
        await until(lambda: w.status() == {"minister": "pending", "embassy": "failed"}, "both outcomes")
        minister, embassy = w.rows("minister"), w.rows("embassy")
        left = w.store.backlog(utcnow())
    assert [r.outcome for r in minister] == ["submitted", "retry"]
    assert minister[1].detail == adapter.words.details[Outcome.NO_ANSWER]
    assert [r.outcome for r in embassy] == ["submitted", "failed"]
    assert embassy[1].detail == adapter.words.details[Outcome.NOT_A_FAX]
    assert left.due_now == 0 and left.later == 1  # the retry waits out the fax backoff
    assert len(w.fake.job_ids(EMBASSY)) == 1


@pytest.mark.parametrize("adapter", able(DIALS))
async def test_retries_stop_when_the_attempts_run_out(tmp_path: Path, adapter: Adapter) -> None:
    with provider_world(tmp_path, adapter, fax_max_attempts=2) as w:
        w.fake.outcome(MINISTER, Outcome.NO_ANSWER, Outcome.NO_ANSWER)
        async with w.running():
            await until(lambda: w.status() == {"minister": "failed"}, "the last attempt", within=15)
        rows = w.rows("minister")
    assert [r.outcome for r in rows] == ["submitted", "retry", "submitted", "failed"]
    assert "gave up after 2 attempts: no answer" in rows[-1].detail
    assert len(w.fake.job_ids(MINISTER)) == 2


@pytest.mark.parametrize("adapter", able(REFUSES))
async def test_a_number_refused_at_submission_fails_at_once(tmp_path: Path, adapter: Adapter) -> None:
    with provider_world(tmp_path, adapter) as w:
        w.fake.refuse_next(MINISTER, Refusal.INVALID_NUMBER)
        await w.run_once()
        rows, status = w.rows("minister"), w.status()
    assert status == {"minister": "failed"} and [r.outcome for r in rows] == ["failed"]
    assert rows[0].code == adapter.words.invalid_code
    assert rows[0].detail == adapter.words.invalid_detail
    assert [s.status for s in w.fake.submissions(MINISTER)] == [adapter.words.invalid_code]
    assert w.fake.job_ids(MINISTER) == []


@pytest.mark.parametrize("adapter", able(REFUSES))
async def test_429_waits_as_long_as_told_and_500_is_tried_again(tmp_path: Path, adapter: Adapter) -> None:
    with provider_world(tmp_path, adapter, BOTH) as w:
        w.fake.refuse_next(MINISTER, Refusal.RATE_LIMITED)
        w.fake.refuse_next(EMBASSY, Refusal.BROKEN)
        async with w.running():
            await until(lambda: set(w.status().values()) == {"sent"}, "both faxes", within=15)
        minister, embassy = w.rows("minister"), w.rows("embassy")
    assert [r.outcome for r in minister] == ["retry", "submitted", "sent"] and minister[0].code == 429
    assert minister[1].started_at - minister[0].finished_at >= dt.timedelta(seconds=1)
    assert [r.outcome for r in embassy] == ["retry", "submitted", "sent"] and embassy[0].code == 500
    limited, broken = w.fake.submissions(MINISTER), w.fake.submissions(EMBASSY)
    accepted = adapter.words.accepted
    assert [s.status for s in limited] == [429, accepted] and [s.status for s in broken] == [500, accepted]
    assert limited[1].at - limited[0].at >= 0.95  # not before Retry-After, though retry_initial is 0.2
    assert len(w.fake.job_ids(MINISTER)) == len(w.fake.job_ids(EMBASSY)) == 1


@pytest.mark.parametrize("adapter", able(WEBHOOKS))
async def test_a_repeated_webhook_is_refused_and_changes_nothing(tmp_path: Path, adapter: Adapter) -> None:
    with provider_world(tmp_path, adapter) as w:
        w.fake.repeat_webhooks(MINISTER)
        async with w.running():
            await until(lambda: len(w.fake.final_answers(MINISTER)) == 2, "both webhooks")
        status, rows = w.status(), w.rows("minister")
    assert w.fake.final_answers(MINISTER) == [200, 409]
    assert status == {"minister": "sent"}
    assert Counter(r.outcome for r in rows) == {"submitted": 1, "sent": 1}


@pytest.mark.parametrize("adapter", able(WEBHOOKS, DIALS))
async def test_lost_webhooks_are_made_up_for_by_polling(tmp_path: Path, adapter: Adapter) -> None:
    with provider_world(tmp_path, adapter, BOTH, **SLOW_RETRIES) as w:
        for number in (MINISTER, EMBASSY):
            w.fake.drop_webhooks(number)
            w.fake.hold(number)  # so that the first run's own poll finds them queued
        w.fake.outcome(EMBASSY, Outcome.BUSY)
        await w.run_once()
        assert w.status() == {"minister": "submitted", "embassy": "submitted"}
        w.fake.release(MINISTER)
        w.fake.release(EMBASSY)
        ended = [adapter.words.delivered, adapter.words.states[Outcome.BUSY]]
        await until(lambda: w.fake.job_states(MINISTER) + w.fake.job_states(EMBASSY) == ended, "the fake")
        await w.run_once()
        minister, embassy = w.rows("minister"), w.rows("embassy")
    assert w.fake.final_answers(MINISTER) == w.fake.final_answers(EMBASSY) == []
    assert [r.outcome for r in minister] == ["submitted", "sent"]
    assert minister[1].worker == "poll:w"
    assert (minister[1].pages, minister[1].duration) == adapter.words.polled
    assert [r.outcome for r in embassy] == ["submitted", "retry"]
    assert embassy[1].detail == adapter.words.details[Outcome.BUSY] and embassy[1].worker == "poll:w"


@pytest.mark.parametrize("adapter", able(DIALS))
async def test_a_paused_action_withdraws_its_queued_fax_where_it_can_and_sends_on_resume(
    tmp_path: Path, adapter: Adapter
) -> None:
    with provider_world(tmp_path, adapter) as w:
        w.fake.hold(MINISTER)
        await w.run_once()
        await until(lambda: w.fake.job_states(MINISTER) == [adapter.words.waiting], "the queued fax")
        action = load_actions(w.settings.actions_dir).actions[ACTION]
        controls.pause(w.store, action, "staff", utcnow())
        await w.run_once()  # its sweep withdraws what the provider lets it
        paused, rows, states = w.status(), w.rows("minister"), w.fake.job_states(MINISTER)
        controls.resume(w.store, action, "staff", utcnow())
        w.fake.release(MINISTER)
        async with w.running():
            await until(lambda: w.status() == {"minister": "sent"}, "the fax sent after the resume")
        ended = w.fake.job_states(MINISTER)
    if adapter.words.withdrawn is None:  # left to finish: no second fax
        assert paused == {"minister": "submitted"} and [r.outcome for r in rows] == ["submitted"]
        assert states == [adapter.words.waiting] and ended == [adapter.words.delivered]
        return
    assert paused == {"minister": "pending"}
    assert [r.outcome for r in rows] == ["submitted", "retry"] and rows[1].detail.startswith("cancelled")
    assert states == [adapter.words.withdrawn]
    assert ended == [adapter.words.withdrawn, adapter.words.delivered]


@pytest.mark.slow
@pytest.mark.parametrize("adapter", able(REFUSES, WEBHOOKS))
def test_after_a_kill_the_accepted_fax_is_found_not_sent_again(tmp_path: Path, adapter: Adapter) -> None:
    """SIGKILL between the provider's acceptance and our commit: the restart asks it first."""
    command = [dispatcher_executable(), "run", "--worker-id", "w1"]
    with provider_world(tmp_path, adapter) as w, (tmp_path / "run.log").open("wb") as out:
        w.fake.refuse_next(MINISTER, Refusal.HANG)  # accepted, and the answer never comes
        env = w.env(DISPATCHER_LEASE_SECONDS="2")
        first = subprocess.Popen(command, env=env, stdout=out, stderr=out)
        try:
            wait_until(lambda: bool(w.fake.job_ids(MINISTER)), 30, "the fax at the provider")
        finally:
            stop(first, 9)
        killed = w.status()
        wait_until(lambda: w.fake.job_states(MINISTER) == [adapter.words.delivered], 10, "the fax")
        # Its news came before we knew the job: kept, and applied at the commit.
        wait_until(lambda: w.fake.final_answers(MINISTER) == [200], 10, "the provider's news")
        # The restart under the same worker id takes its leases back at once.
        subprocess.run([*command, "--once"], env=env, stdout=out, stderr=out, timeout=60, check=True)
        [job] = w.fake.job_ids(MINISTER)
        rows, status = w.rows("minister"), w.status()
    assert killed == {"minister": "sending"}  # the kill came before our commit
    assert f"{adapter.name} already has fax {job}; not submitting again" in (tmp_path / "run.log").read_text()
    assert [s.status for s in w.fake.submissions(MINISTER)] == [adapter.words.accepted]
    assert status == {"minister": "sent"}
    assert [r.outcome for r in rows] == ["interrupted", "submitted", "sent"]
    assert rows[1].detail == f"found already submitted as {job}"
    assert rows[1].job_id == rows[2].job_id == job
