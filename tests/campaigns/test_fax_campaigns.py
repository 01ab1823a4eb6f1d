"""Seeded randomised fax campaigns against the fake Telnyx, with two workers, checked on what the
provider received: one fax at a time per number, never a second delivered fax for a letter, no
more attempts than allowed, none after the deadline, and every run ends with every letter sent
or failed for a reason the vocabulary allows.

Replay one with ``FAX_CAMPAIGN_SEED=n``; run more with ``FAX_CAMPAIGN_SCENARIOS=k``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import os
import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dispatcher.channels import make_channels
from dispatcher.sending.runtime import Dispatcher, utcnow
from dispatcher.settings import Settings
from dispatcher.store import Store, open_store
from dispatcher.store.failures import Failure
from dispatcher.web import app_for
from tests.campaigns.test_campaign_shapes import TEMPLATE, supporters
from tests.contract.test_fax_telnyx import API_KEY, CONNECTION, SENDER, settings_for, telnyx_env
from tests.support.actions import action_data, write_action
from tests.support.asgi_server import serve
from tests.support.fax_servers.telnyx import BROKEN, Answer, FakeTelnyx, Fax, Plan, too_many
from tests.support.processes import free_port
from tests.unit.test_faxpdf import MISSING

pytestmark = pytest.mark.skipif(bool(MISSING), reason=MISSING)

NUMBERS = [f"+44207946{n:04d}" for n in (101, 202, 303, 404, 505)]  # Ofcom's drama range
# Telnyx failure reasons and what the dispatcher should make of them.
RETRYABLE = ("user_busy", "no_answer", "call_dropped")
FINAL = ("fax_initial_communication_timeout", "destination_invalid")
MAX_ATTEMPTS = 3
FIRST = int(os.environ.get("FAX_CAMPAIGN_FIRST_SEED", "1"))
SEEDS = (
    [int(os.environ["FAX_CAMPAIGN_SEED"])]
    if "FAX_CAMPAIGN_SEED" in os.environ
    else list(range(FIRST, FIRST + int(os.environ.get("FAX_CAMPAIGN_SCENARIOS", "3"))))
)


@dataclass
class Scenario:
    seed: int
    actions: dict[str, list[str]]  # action id -> fax numbers of its targets
    people: int

    def __str__(self) -> str:
        return f"seed {self.seed}: {self.actions}, {self.people} supporters"


def scenario(seed: int) -> Scenario:
    rng = random.Random(seed)
    actions = {
        f"act{a}": rng.sample(NUMBERS, rng.randint(1, 3))  # numbers shared between actions
        for a in range(rng.randint(2, 3))
    }
    return Scenario(seed, actions, rng.randint(2, 4))


def script(fake: FakeTelnyx, rng: random.Random) -> None:
    """Random fates for the first faxes to each number, then delivered; random refusals."""
    for number in NUMBERS:
        plans = []
        for _ in range(rng.randint(0, 6)):
            roll = rng.random()
            if roll < 0.35:
                plans.append(Plan(failure=rng.choice(RETRYABLE)))
            elif roll < 0.45:
                plans.append(Plan(failure=rng.choice(FINAL)))
            elif roll < 0.6:
                plans.append(Plan(twice=True))
            elif roll < 0.75:
                plans.append(Plan(reorder=True))
            else:
                plans.append(Plan())
        fake.plan(number, *plans)
        answers: list[Answer] = [rng.choice([BROKEN, too_many(1)]) for _ in range(rng.randint(0, 2))]
        fake.answer(number, *answers)


def write_world(tmp_path: Path, world: Scenario) -> None:
    for action, numbers in world.actions.items():
        targets = [
            {"id": f"t{i}", "name": f"Office {i}", "salutation": {"en": "Dear Sir or Madam"}, "fax": n}
            | {"channels": ["fax"]}
            for i, n in enumerate(numbers)
        ]
        write_action(tmp_path / "actions", action_data(action, targets, title=action))
        (tmp_path / "templates" / action).mkdir(parents=True, exist_ok=True)
        (tmp_path / "templates" / action / "en.j2").write_text(TEMPLATE)


@contextlib.contextmanager
def campaign(tmp_path: Path, world: Scenario) -> Iterator[tuple[Settings, FakeTelnyx, Store]]:
    write_world(tmp_path, world)
    key = Ed25519PrivateKey.generate()
    fake = FakeTelnyx(API_KEY, CONNECTION, SENDER, key)
    script(fake, random.Random(world.seed))
    port = free_port()
    with serve(fake.app) as fake_url:
        env = telnyx_env(f"http://127.0.0.1:{port}", fake_url, key)
        tight: dict[str, Any] = {
            "fax_retry_initial": 0.2,
            "fax_retry_max": 0.5,
            "fax_max_attempts": MAX_ATTEMPTS,
        }
        settings = settings_for(tmp_path, env, retry_initial=0.2, retry_max=0.5, **tight)
        store = open_store(settings.database_url)
        try:
            store.import_supporters(supporters(world.people), utcnow())
            with serve(app_for(settings, store), port):
                yield settings, fake, store
        finally:
            store.close()


async def run_rounds(settings: Settings, rounds: int = 30) -> None:
    """Two workers, each its own store connection, run --once again and again (as cron would)
    until nothing is left to do."""
    for _ in range(rounds):
        stores = [open_store(settings.database_url) for _ in range(2)]
        workers = [
            Dispatcher(settings, s, make_channels(settings, s), worker_id=f"w{n}")
            for n, s in enumerate(stores)
        ]
        await asyncio.gather(*(w.run_once() for w in workers))
        unfinished = sum(
            r.count for r in stores[0].queue_counts() if r.status in ("pending", "sending", "submitted")
        )
        for s in stores:
            s.close()
        if not unfinished:
            return
        await asyncio.sleep(0.3)  # the retries are due within half a second


def final_at(fax: Fax) -> dt.datetime:
    return fax.updated_at


def check(world: Scenario, fake: FakeTelnyx, store: Store) -> None:
    faxes = list(fake.faxes.values())
    by_number: dict[str, list[Fax]] = defaultdict(list)
    by_letter: dict[str | None, list[Fax]] = defaultdict(list)
    for fax in faxes:
        by_number[fax.to].append(fax)
        by_letter[fax.reference].append(fax)
    for number, sent in by_number.items():  # one fax at a time per number
        sent.sort(key=lambda f: f.created_at)
        for before, after in itertools.pairwise(sent):
            assert after.created_at >= final_at(before), f"{world}: two faxes at once to {number}"
    for reference, tries in by_letter.items():
        delivered = [f for f in tries if f.status == "delivered"]
        assert len(delivered) <= 1, f"{world}: {reference} delivered {len(delivered)} times"
        assert len(tries) <= MAX_ATTEMPTS, f"{world}: {reference} faxed {len(tries)} times"
    statuses = Counter(r.status for r in store.queue_counts() for _ in range(r.count))
    planned = world.people * sum(len(numbers) for numbers in world.actions.values())
    assert set(statuses) <= {"sent", "failed"}, f"{world}: left {statuses}"
    assert sum(statuses.values()) == planned
    assert statuses["sent"] == sum(1 for t in by_letter.values() if any(f.status == "delivered" for f in t))
    log = list(store.attempt_log())
    words = tuple(f.value for f in Failure)
    for row in log:
        if row.outcome == "failed":  # in the vocabulary, after the attempts count if it gave up
            reason = row.detail.split(": ", 1)[1] if row.detail.startswith("gave up after") else row.detail
            assert reason.startswith(words), f"{world}: {row.detail!r}"
    assert all(r.destination in NUMBERS for r in log if r.outcome == "submitted"), world


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
async def test_random_fax_campaigns_keep_their_invariants(tmp_path: Path, seed: int) -> None:
    world = scenario(seed)
    with campaign(tmp_path, world) as (settings, fake, store):
        await asyncio.wait_for(run_rounds(settings), 240)
        await asyncio.sleep(0.2)  # webhooks still on their way change nothing (checked below)
        check(world, fake, store)
