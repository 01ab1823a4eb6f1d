"""Splitting a fax digest: whatever the letters' lengths, every letter once and in order, no fax
over its pages (a cover page and its letters) but for a letter too long for any, which goes alone."""

from __future__ import annotations

import itertools
import random

import pytest

from dispatcher.letters.faxdigest import split


@pytest.mark.parametrize("seed", range(20))
def test_every_letter_once_in_order_and_no_fax_over_its_pages(seed: int) -> None:
    rng = random.Random(seed)
    most = rng.randint(2, 8)
    counts = [rng.choice([1, 1, 1, 2, 3, most + 2]) for _ in range(rng.randint(1, 40))]
    parts = split(counts, most)
    assert [i for part in parts for i in part] == list(range(len(counts)))
    for part in parts:
        pages = 1 + sum(counts[i] for i in part)
        assert pages <= most or len(part) == 1
    # Greedy: the next letter would not have fitted in the fax before.
    for before, after in itertools.pairwise(parts):
        assert 1 + sum(counts[i] for i in before) + counts[after.start] > most
