"""A slow SMTP server and one that goes away for a while: the real dispatcher, a real SQLite file,
aiosmtpd on 127.0.0.1 answering late or not listening at all."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from dispatcher.actions.model import Action
from dispatcher.channels import make_channels
from dispatcher.channels.email import PROBE_MAX
from dispatcher.sending.runtime import Dispatcher, utcnow
from dispatcher.store import Store, open_store
from tests.smtp_server import ScriptedHandler, SmtpServer
from tests.test_email_smtp import WORKER, delivery_rows, make_settings, people, run_once, until, write_action


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Store]:
    store = open_store(f"sqlite:///{tmp_path / 'dispatcher.db'}")
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def action(tmp_path: Path) -> Action:
    return write_action(tmp_path / "actions")


def assert_each_sent_once(store: Store, server: SmtpServer, total: int) -> None:
    """Every letter arrived exactly once, after one attempt that nobody took back."""
    ids = server.message_ids()
    twice = {mid: n for mid, n in Counter(ids).items() if n > 1}
    assert twice == {}, f"{len(twice)} letters arrived more than once"
    assert len(ids) == total
    assert {r.status for r in delivery_rows(store)} == {"sent"}
    assert [a.outcome for a in store.attempt_log()] == ["sent"] * total


async def test_the_smtp_timeout_is_per_command_not_per_letter(
    tmp_path: Path, db: Store, action: Action
) -> None:
    # Every reply takes 0.4 s; a letter with a copy is MAIL, RCPT, RCPT, DATA and the message:
    # 2 s in all, twice the 1 s timeout, while no single command comes near it.
    assert action.copies("email"), "the demo action copies an official"
    total = 4
    db.import_supporters(people(total), utcnow())
    handler = ScriptedHandler(delay=0.4, pause={"mail": 0.4, "rcpt": 0.4})
    with SmtpServer(handler) as slow:
        await run_once(make_settings(tmp_path, slow.url, smtp_timeout=1.0), db)
        assert_each_sent_once(db, slow, total)


@pytest.mark.slow
async def test_a_lease_shorter_than_an_attempt_is_renewed_while_the_attempt_runs(
    tmp_path: Path, db: Store, action: Action
) -> None:
    # The server takes 2.5 s to answer the message, the lease is 1.5 s: the dispatcher's own
    # recovery (every second) must not take the letter back from its own running attempt.
    total = 4
    db.import_supporters(people(total), utcnow())
    with SmtpServer(ScriptedHandler(delay=2.5)) as slow:
        await run_once(make_settings(tmp_path, slow.url, smtp_timeout=5.0, lease_seconds=1.5), db)
        assert_each_sent_once(db, slow, total)


@pytest.mark.slow
async def test_after_an_outage_the_first_letter_goes_soon_after_the_server_is_back(
    tmp_path: Path, db: Store, action: Action
) -> None:
    db.import_supporters(people(30), utcnow())
    with SmtpServer() as gone:
        url = gone.url  # a port that was just free: nothing listens on it until the server is back
    settings = make_settings(tmp_path, url)
    dispatcher = Dispatcher(settings, db, make_channels(settings, db), worker_id=WORKER)
    running = asyncio.create_task(dispatcher.run_forever())
    try:
        await asyncio.sleep(12)  # the outage
        assert not running.done()
        with SmtpServer(port=int(url.rsplit(":", 1)[1])) as back:
            started = time.monotonic()
            await until(lambda: bool(back.received()), PROBE_MAX + 2, "the first letter after the outage")
            waited = time.monotonic() - started
            dispatcher.stop()
            await asyncio.wait_for(running, 15)
    finally:
        dispatcher.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(running, 15)
    # Letters were not spent as probes: only those that found the server gone wait for a retry.
    retried = [a for a in db.attempt_log() if a.outcome == "retry"]
    assert 1 <= len(retried) <= settings.smtp_pool, retried
    print(f"\nfirst letter {waited:.1f} s after the server was back")
