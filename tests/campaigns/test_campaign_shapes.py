"""The shapes that stopped the foundation: several actions, several targets, copies, two workers.

Each test runs the real dispatcher against aiosmtpd on loopback and checks what the server got.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from dispatcher.channels import make_channels
from dispatcher.models import SupporterRecord, Terms
from dispatcher.sending.feeder import START_WITHIN
from dispatcher.sending.runtime import Dispatcher, utcnow
from dispatcher.settings import Settings
from dispatcher.store import Store, open_store
from tests.support.actions import action_data, write_action
from tests.support.caps import NO_CAPS
from tests.support.smtp_server import Received, SmtpServer

TEMPLATE = (
    "{% block subject %}About {{ action.title }}{% endblock %}"
    "{% block body %}{{ target.salutation }},\nPlease act.\n"
    "{% if supporter.words %}{{ supporter.words }}{% endif %}{{ supporter.name }}\n{% endblock %}"
)
LIFTED: dict[str, Any] = {
    "rate_per_target": 10_000.0,
    "burst_per_target": 10_000,
    "rate_global": 100_000.0,
    **NO_CAPS,
}


def write_actions(tmp_path: Path, shapes: dict[str, list[str]]) -> None:
    """One action per entry; each target is "name" (role to) or "name:cc"."""
    (tmp_path / "actions").mkdir()
    for action_id, targets in shapes.items():
        entries = []
        for spec in targets:
            name, _, role = spec.partition(":")
            entries.append(
                {
                    "id": name,
                    "name": name.title(),
                    "role": role or "to",
                    "salutation": {"en": f"Dear {name.title()}"},
                    "email": f"{name}@example.org",
                    "channels": ["email"],
                }
            )
        write_action(tmp_path / "actions", action_data(action_id, entries))
        folder = tmp_path / "templates" / action_id
        folder.mkdir(parents=True)
        (folder / "en.j2").write_text(TEMPLATE)


def supporters(n: int, scopes: tuple[str, ...] = ("all",), start: int = 0) -> list[SupporterRecord]:
    """Supporters who chose direct replies: their letters are told apart by their Reply-To."""
    opted, direct = utcnow() - dt.timedelta(days=1), Terms(replies="direct")
    return [
        SupporterRecord(
            f"s{i}@example.net", f"Supporter {i}", "en", "Town", "GB", scopes, opted, terms=direct
        )
        for i in range(start, start + n)
    ]


def settings(tmp_path: Path, url: str, db: str | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db or f"sqlite:///{tmp_path / 'd.db'}",
        "actions_dir": tmp_path / "actions",
        "templates_dir": tmp_path / "templates",
        "smtp_url": url,
        "smtp_pool": 4,
        "smtp_timeout": 5.0,
    }
    return Settings.model_validate(values | overrides)


async def run_once(config: Settings, store: Store, worker: str = "w", limit: float = 120) -> Dispatcher:
    dispatcher = Dispatcher(config, store, make_channels(config, store), worker_id=worker)
    await asyncio.wait_for(dispatcher.run_once(), limit)  # run --once must end
    return dispatcher


def letters_per_recipient(received: list[Received]) -> Counter[str]:
    return Counter(rcpt for r in received for rcpt in r.rcpt_tos)


def assert_paced(received: list[Received], rate: float, burst: float) -> None:
    """What each mailbox got in any span T stays within burst + rate × (T + START_WITHIN)."""
    arrivals: dict[str, list[float]] = defaultdict(list)
    for r in received:
        for rcpt in r.rcpt_tos:
            arrivals[rcpt].append(r.at)
    for rcpt, times in arrivals.items():
        times.sort()
        for i, start in enumerate(times):
            for j in range(i, len(times)):
                allowed = burst + rate * (times[j] - start + START_WITHIN)
                assert j - i + 1 <= allowed, f"{rcpt}: {j - i + 1} letters in {times[j] - start:.2f} s"


@pytest.mark.parametrize("pacing", ["lifted", "default"])
async def test_two_targets_both_get_every_letter(tmp_path: Path, pacing: str) -> None:
    write_actions(tmp_path, {"a": ["pres", "minister"]})
    n = 400 if pacing == "lifted" else 24
    with SmtpServer() as smtp:
        config = settings(tmp_path, smtp.url, **(LIFTED if pacing == "lifted" else {}))
        store = open_store(config.database_url)
        store.import_supporters(supporters(n), utcnow())
        dispatcher = await run_once(config, store)
        store.close()
        got = letters_per_recipient(smtp.received())
    assert got == {"pres@example.org": n, "minister@example.org": n}
    assert dispatcher.left.due_now == dispatcher.left.later == 0
    if pacing == "default":
        assert_paced(smtp.received(), rate=2, burst=10)


async def test_a_fifth_action_with_one_supporter_is_not_starved(tmp_path: Path) -> None:
    # Four actions whose letters all went out earlier, and a fifth with one new supporter: the
    # four, with nothing due, used to take all the claim room every round.
    write_actions(tmp_path, {f"a{n}": [f"t{n}"] for n in range(1, 6)})
    with SmtpServer() as smtp:
        config = settings(tmp_path, smtp.url)  # default pacing
        store = open_store(config.database_url)
        store.import_supporters(supporters(12, ("a1", "a2", "a3", "a4")), utcnow())
        await run_once(config, store)
        store.import_supporters(supporters(1, ("a5",), start=12), utcnow())
        await run_once(config, store, limit=30)
        store.close()
        got = letters_per_recipient(smtp.received())
    assert got == {f"t{n}@example.org": 12 for n in range(1, 5)} | {"t5@example.org": 1}


@pytest.mark.parametrize("pacing", ["lifted", "default"])
async def test_six_actions_of_one_to_five_targets_with_a_copy(tmp_path: Path, pacing: str) -> None:
    shapes = {
        "a1": ["p1"],
        "a2": ["p2", "m2"],
        "a3": ["p3", "m3", "amb3:cc"],
        "a4": ["p4", "m4", "j4", "k4"],
        "a5": ["p5", "m5", "j5", "k5", "l5"],
        "a6": ["p6", "p1"],  # the same official as in a1: one mailbox, one pace
    }
    write_actions(tmp_path, shapes)
    with SmtpServer() as smtp:
        # Default pacing, caps lifted: 60 letters to p1 and to amb3 would meet their hourly cap.
        config = settings(tmp_path, smtp.url, **(LIFTED if pacing == "lifted" else NO_CAPS))
        store = open_store(config.database_url)
        store.import_supporters(supporters(30), utcnow())
        await run_once(config, store)
        store.close()
        received = smtp.received()
    got = letters_per_recipient(received)
    expected = Counter({f"{t}@example.org": 30 for ts in shapes.values() for t in ts if ":" not in t})
    expected["p1@example.org"] = 60
    expected["amb3@example.org"] = 60  # copied on the letters to both of a3's `to` targets
    assert got == expected
    assert len({r.message_id for r in received}) == len(received)
    if pacing == "default":
        assert_paced(received, rate=2, burst=10)


@pytest.mark.postgres
async def test_two_workers_keep_one_pace_per_official(tmp_path: Path, pg_url: str) -> None:
    write_actions(tmp_path, {"a": ["pres", "amb:cc"], "b": ["minister"]})
    with SmtpServer() as smtp:
        config = settings(tmp_path, smtp.url, pg_url, rate_per_target=5.0, burst_per_target=5)
        setup = open_store(pg_url)
        setup.import_supporters(supporters(30), utcnow())
        setup.close()
        stores = [open_store(pg_url, migrate=False) for _ in range(2)]
        workers = await asyncio.gather(*(run_once(config, s, f"w{i}") for i, s in enumerate(stores)))
        for s in stores:
            s.close()
        received = smtp.received()
    assert letters_per_recipient(received) == {
        "pres@example.org": 30,
        "amb@example.org": 30,
        "minister@example.org": 30,
    }
    assert all(w.tally.counts["sent"] > 0 for w in workers), "both workers should have sent"
    assert_paced(received, rate=5, burst=5)
