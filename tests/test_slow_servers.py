"""A slow SMTP server and one that goes away for a while: the real dispatcher, a real SQLite file,
aiosmtpd on 127.0.0.1 answering late or not listening at all."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from dispatcher.config import Action
from dispatcher.scheduler import utcnow
from dispatcher.store import Store, open_store
from tests.smtp_server import ScriptedHandler, SmtpServer
from tests.test_email_smtp import delivery_rows, make_settings, people, run_once, write_action


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
