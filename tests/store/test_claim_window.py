"""At hundreds of groups a claim round looks at a window of them, and the feeder moves on from
where it stopped: every group with letters due is served once before any is served twice."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from pathlib import Path

import pytest

from dispatcher.channels import make_channels
from dispatcher.models import ClaimGroup
from dispatcher.pacing import Limits
from dispatcher.sending.feeder import Feeder
from dispatcher.settings import Settings
from dispatcher.store import Store
from dispatcher.store.thread import StoreThread
from tests.store.test_claim_reference import supporter
from tests.store.test_store_contract import LEASE, NOW


def many_groups(store: Store, count: int, letters: int) -> list[ClaimGroup]:
    """``count`` actions of one target each, ``letters`` letters due in each."""
    groups = []
    for a in range(count):
        store.import_supporters([supporter(a * letters + i, f"a{a}") for i in range(letters)], NOW)
        store.plan(f"a{a}", [("t", "email")], NOW - dt.timedelta(minutes=1))
        groups.append(ClaimGroup(f"a{a}", "t", "email", (f"email:a{a}@x.org",)))
    return groups


def feeder_for(store: Store, tmp_path: Path) -> Feeder:
    settings = Settings(outbox=tmp_path / "outbox")
    channels = make_channels(settings, store)
    return Feeder(store, StoreThread(), "w", channels, Limits(1e9, 1e9, 1e9), LEASE, 200, lambda: NOW)


@pytest.mark.parametrize("seed", range(2))
async def test_every_group_is_served_before_any_is_served_twice(
    store: Store, tmp_path: Path, seed: int
) -> None:
    # The old feeder moved its start one group a round: at 300 groups and a room of 200, the
    # same 200 were served round after round while the others waited for their first letter.
    rng = random.Random(seed)
    letters = 3
    groups = many_groups(store, rng.randint(100, 300), letters)
    feeder = feeder_for(store, tmp_path)
    queue = feeder.queues["email"]
    served: Counter[str] = Counter()
    try:
        while sum(served.values()) < len(groups) * letters:
            queue.ahead = rng.randint(1, 250)  # what the senders' pace would make of the room
            if not await feeder.fill(groups):  # the rest are dry: a refresh asks them again
                feeder.stir()
                assert await feeder.fill(groups), f"nothing claimed with {sum(served.values())} served"
            while not queue.items.empty():  # the senders take every letter claimed
                item = queue.items.get_nowait()
                assert item is not None
                served[item.claim.action_id] += 1
            counts = [served[g.action_id] for g in groups]
            assert max(counts) - min(counts) <= 1, f"seed {seed}: {sorted(Counter(counts).items())}"
    finally:
        feeder.db.shutdown()
