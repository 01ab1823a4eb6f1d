"""How alike two variants of a letter are, as a filter counting near-identical messages would see
them: the Jaccard index of their shingles after case, width and punctuation are normalised.

Shingles are runs of 3 words; Chinese, Japanese and Korean letters are shingled in runs of 3
characters (spaces dropped) since Chinese and Japanese write no spaces between words and Korean's
spacing is too loose to count on.
"""

from __future__ import annotations

import itertools
import unicodedata
from dataclasses import dataclass

from dispatcher.letters.render import Letter

SHINGLE = 3
# Above this, ``check`` warns: variants sharing more than half their 3-word runs are one text with
# words swapped, which a near-duplicate filter groups. Letters written apart share the salutation,
# the names and the closing: about 0.05 to 0.2.
WARN_ABOVE = 0.5
CHARACTER_SHINGLED = frozenset({"zh", "ja", "ko"})


def _plain(text: str) -> str:
    """Casefolded NFKC text with punctuation and symbols as spaces."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(" " if unicodedata.category(c)[0] in "PSZC" else c for c in folded)


def unit(language: str) -> str:
    """What a shingle is a run of in this language: "word" or "character"."""
    return "character" if language.split("-")[0].lower() in CHARACTER_SHINGLED else "word"


def shingles(text: str, language: str) -> frozenset[tuple[str, ...]]:
    """The text's runs of ``SHINGLE`` words (or characters for zh, ja, ko); a shorter text is one."""
    words = _plain(text).split()
    units = list(itertools.chain.from_iterable(words)) if unit(language) == "character" else words
    if len(units) < SHINGLE:
        return frozenset({tuple(units)}) if units else frozenset()
    return frozenset(tuple(units[i : i + SHINGLE]) for i in range(len(units) - SHINGLE + 1))


def jaccard(a: frozenset[tuple[str, ...]], b: frozenset[tuple[str, ...]]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


@dataclass(frozen=True)
class Resemblance:
    first: str  # variant names
    second: str
    score: float  # 0: nothing shared, 1: the same shingles

    @property
    def too_close(self) -> bool:
        return self.score > WARN_ABOVE


def resemblances(letters: dict[str, Letter], language: str) -> list[Resemblance]:
    """Every pair of these variants' letters (subject and body) with their similarity."""
    sets = {name: shingles(f"{x.subject}\n{x.body}", language) for name, x in sorted(letters.items())}
    return [Resemblance(a, b, jaccard(sets[a], sets[b])) for a, b in itertools.combinations(sorted(sets), 2)]
