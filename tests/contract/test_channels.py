"""The channel contract: what every channel (email by SMTP, email to a Maildir, fax) does with
a letter, through its adapter (``channels.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dispatcher import capabilities
from dispatcher.actions.model import Action
from dispatcher.channels import IMPLEMENTED, make_channels
from dispatcher.models import AttemptRow
from dispatcher.sending.runtime import Dispatcher
from dispatcher.settings import Settings
from dispatcher.store import Store, open_store
from tests.contract.channels import FAILS, Channel, Endpoint, able
from tests.contract.world import ACTION, action_data, base_settings, opened, until
from tests.test_faxpdf import MISSING

pytestmark = pytest.mark.skipif(bool(MISSING), reason=MISSING)


@dataclass
class Letter:
    """One supporter's letter to one target, by the channel under test."""

    channel: Channel
    end: Endpoint
    settings: Settings
    store: Store

    def dispatcher(self, ahead: dt.timedelta = dt.timedelta(0)) -> Dispatcher:
        channels = make_channels(self.settings, self.store)

        def clock() -> dt.datetime:
            return dt.datetime.now(dt.UTC) + ahead

        return Dispatcher(self.settings, self.store, channels, worker_id="w", clock=clock)

    async def until(self, status: str) -> None:
        dispatcher = self.dispatcher()
        task = asyncio.create_task(dispatcher.run_forever())
        try:
            await until(lambda: self.statuses() == [status], f"the letter {status}", within=15)
        finally:
            dispatcher.stop()
            await task

    def statuses(self) -> list[str]:
        return [r.status for r in self.store.queue_counts() for _ in range(r.count)]

    def log(self) -> list[AttemptRow]:
        return list(self.store.attempt_log(ACTION))


@contextlib.contextmanager
def letter(tmp_path: Path, channel: Channel) -> Iterator[Letter]:
    with channel.serve(tmp_path) as (end, values):
        values = base_settings(tmp_path) | values
        with opened(tmp_path, {"minister": channel.target}, values) as store:
            yield Letter(channel, end, Settings.model_validate(values), store)


@pytest.mark.parametrize("channel", able())
async def test_a_letter_reaches_its_target_once(tmp_path: Path, channel: Channel) -> None:
    with letter(tmp_path, channel) as it:
        await it.until("sent")
        await it.dispatcher().run_once()  # a second run finds nothing left to send
        log = it.log()
    assert it.end.letters() == 1
    # The PDF the kind declares (or not) is what arrived.
    [name] = channel.target["channels"]
    assert it.end.pdfs() == (1 if capabilities.of(name).pdf else 0)
    assert [r.outcome for r in log if r.outcome in ("sent", "failed", "retry")] == ["sent"]


@pytest.mark.parametrize("channel", able(FAILS))
async def test_a_transient_failure_is_tried_again(tmp_path: Path, channel: Channel) -> None:
    with letter(tmp_path, channel) as it:
        it.end.fail_next(permanent=False)
        await it.until("sent")
        log = it.log()
    assert it.end.letters() == 1
    assert [r.outcome for r in log if r.outcome != "submitted"] == ["retry", "sent"]


@pytest.mark.parametrize("channel", able(FAILS))
async def test_a_permanent_failure_fails_the_letter_for_good(tmp_path: Path, channel: Channel) -> None:
    with letter(tmp_path, channel) as it:
        it.end.fail_next(permanent=True)
        await it.until("failed")
        await it.dispatcher().run_once()  # nothing is tried again
        log = it.log()
    assert it.end.letters() == 0
    assert [r.outcome for r in log if r.outcome != "submitted"] == ["failed"]


@pytest.mark.parametrize("channel", able())
async def test_a_letter_planned_before_the_deadline_is_not_sent_after_it(
    tmp_path: Path, channel: Channel
) -> None:
    with letter(tmp_path, channel) as it:
        planner = it.dispatcher()
        await planner.plan()
        planner.db.shutdown()
        planned = it.statuses()
        past = dt.datetime(2035, 1, 2, tzinfo=dt.UTC) - dt.datetime.now(dt.UTC)  # the action's, and a day
        await it.dispatcher(ahead=past).run_once()
        log, statuses = it.log(), it.statuses()
    assert planned == ["pending"]
    assert it.end.letters() == 0 and [r.outcome for r in log] == []
    assert statuses == ["expired"]


@pytest.mark.parametrize("channel", able())
def test_a_channel_does_what_its_kind_declares(tmp_path: Path, channel: Channel) -> None:
    """The planner, the store and the web app go by the kind's capabilities, never asking the
    built channel: the two must agree."""
    with channel.serve(tmp_path) as (_, values):
        settings = Settings.model_validate(base_settings(tmp_path) | values)
        store = open_store(settings.database_url)
        try:
            built = make_channels(settings, store)
        finally:
            store.close()
    [name] = channel.target["channels"]
    sender, kind = built[name], capabilities.of(name)
    assert sender.name == name and sender.capabilities == kind
    assert set(built) == set(IMPLEMENTED) == set(capabilities.KINDS)
    action = Action.model_validate(action_data({"to": channel.target, "cc": channel.copy | {"role": "cc"}}))
    to, cc = action.targets
    keys = sender.pacing_keys(action, to)
    assert any(getattr(to, kind.address) in key for key in keys)
    assert (sender.line(action, to) is not None) == kind.line
    assert (sender.provider is not None) == kind.provider
    copied = any(getattr(cc, kind.address) in key for key in keys)
    assert copied == kind.copies == (("cc", name) not in action.delivery_pairs(IMPLEMENTED))
