"""The claim groups are built again only when something they come from changes: kept between the
loop's rounds, they are still what a fresh build would give at every moment of a campaign."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest

from dispatcher.channels import make_channels
from dispatcher.models import ActionState
from dispatcher.sending.catalogue import Catalogue
from dispatcher.store import open_store
from tests.campaigns.test_office_hours import END, START, three_zones, world
from tests.support.actions import action_data


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2))
def test_groups_kept_between_rounds_are_what_a_fresh_build_gives(
    tmp_path: Path, sqlite_url: str, seed: int
) -> None:
    rng = random.Random(seed)
    late = action_data("late", [{**three_zones()["targets"][0], "id": "late-official"}])
    late["deadline"] = "2026-03-30"  # closes during the walk
    settings = world(tmp_path, sqlite_url, [three_zones(), late])
    store = open_store(sqlite_url)
    channels = make_channels(settings, store)
    store.close()
    up = tuple(channels)
    now = [START]
    kept = Catalogue(settings, up, lambda: now[0])
    kept.reload()
    while now[0] < END:
        now[0] += dt.timedelta(minutes=rng.choice([1, 29, 95, 240]))
        fresh = Catalogue(settings, up, lambda: now[0])
        fresh.reload()
        before = kept.groups(up, channels)
        assert kept.groups(up, channels) is before  # the same moment: nothing built again
        assert before == fresh.groups(up, channels), f"seed {seed} at {now[0]}"
        assert kept.opens == fresh.opens, f"seed {seed} at {now[0]}"
    paused = ActionState("zones", "paused", None, now[0], "staff")
    built = kept.groups(up, channels)
    kept.set_states({"zones": paused})
    assert kept.groups(up, channels) is not built
    assert all(g.action_id != "zones" for g in kept.groups(up, channels))
