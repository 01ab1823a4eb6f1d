"""Letter variants: which files are variants, which one a supporter gets (stable, even, the same to
every target), every variant checked, and how alike two variants are (words, or characters for
Chinese, Japanese and Korean)."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from dispatcher.letters import similarity, variants
from dispatcher.letters.render import Letter, RenderError
from tests.unit.test_render import GOOD, SIGNER, TODAY, make

LETTER_A = GOOD.replace("Hello", "Hello A").replace("{{ supporter.name }}", "A\n{{ supporter.name }}")
LETTER_B = GOOD.replace("Hello", "Hello B").replace("{{ supporter.name }}", "B\n{{ supporter.name }}")


def emails(rng: random.Random, n: int) -> list[str]:
    return [f"{rng.getrandbits(40):x}.{i}@example.net" for i in range(n)]


def test_file_names_give_languages_and_variants_and_the_rest_is_unused(tmp_path: Path) -> None:
    files = ["en.j2", "en.b.j2", "en.c.j2", "zh-Hans.j2", "zh-Hans.b.j2", "en.formal.j2", "de.b.j2"]
    renderer, action = make(tmp_path, dict.fromkeys(files, GOOD))
    folder = tmp_path / "templates" / "a"
    assert renderer.languages("a") == {"en", "zh-Hans"}  # not "en.b": a variant is no language
    assert variants.variants(tmp_path / "templates", "a", "en") == ["a", "b", "c"]
    assert renderer.variants("a", "zh-Hans") == ["a", "b"] and renderer.variants("a", "de") == []
    assert variants.unused(folder) == ["de.b.j2", "en.formal.j2"]
    assert renderer.language_for(action, action.target("t")) == "en"


@pytest.mark.parametrize("seed", range(3))
def test_supporters_spread_evenly_and_each_keeps_their_variant(seed: int) -> None:
    rng = random.Random(seed)
    names = ["a", "b", "c"][: rng.choice((2, 3))]
    people = emails(rng, 3000)
    chosen = {e: variants.choose(names, "ua-1", e) for e in people}
    expected = len(people) / len(names)
    assert all(abs(Counter(chosen.values())[n] - expected) < 0.1 * expected for n in names)
    # The same supporter, however their address is written, gets the same variant every time.
    assert all(variants.choose(names, "ua-1", f" {e.upper()} ") == v for e, v in chosen.items())
    # Another action draws again: the variants are not tied to each other across actions.
    other = Counter(chosen[e] == variants.choose(names, "ua-2", e) for e in people)
    assert abs(other[True] - len(people) / len(names)) < 0.1 * len(people) / len(names)


@pytest.mark.parametrize("seed", range(3))
def test_a_new_variant_takes_supporters_only_for_itself(seed: int) -> None:
    people = emails(random.Random(seed), 2000)
    moved = [
        e for e in people if variants.choose(["a", "b"], "x", e) != variants.choose(["a", "b", "c"], "x", e)
    ]
    assert all(variants.choose(["a", "b", "c"], "x", e) == "c" for e in moved)
    assert abs(len(moved) - len(people) / 3) < 0.1 * len(people) / 3


def test_a_letter_is_rendered_in_the_signers_variant_or_the_one_asked(tmp_path: Path) -> None:
    renderer, action = make(tmp_path, {"en.j2": LETTER_A, "en.b.j2": LETTER_B})
    target = action.target("t")
    mine = variants.choose(["a", "b"], action.id, SIGNER.email)
    letter = renderer.render(action, target, "en", SIGNER, TODAY)
    assert letter.variant == mine == renderer.variant_for(action, "en", SIGNER)
    assert letter.subject == f"Hello {mine.upper()} Target"  # the subject is the variant's own
    other = "b" if mine == "a" else "a"
    assert f"\n{other.upper()}\n" in renderer.render(action, target, "en", SIGNER, TODAY, variant=other).body
    with pytest.raises(RenderError, match=r"no variant c \(variants: a, b\)"):
        renderer.render(action, target, "en", SIGNER, TODAY, variant="c")


def test_check_renders_every_variant_and_names_the_one_that_fails(tmp_path: Path) -> None:
    broken = LETTER_B.replace("{{ target.salutation }}", "{{ target.salutaton }}")
    renderer, action = make(
        tmp_path, {"en.j2": LETTER_A, "en.b.j2": broken, "en.c.j2": "{% block subject %}x"}
    )
    problems = [p.problem for p in renderer.check(action, ("email",), TODAY)]
    assert len(problems) == 2, problems
    assert "en.b.j2 line 1: unknown variable target.salutaton" in problems[0]
    assert "en.c.j2 line 1" in problems[1]


def test_a_variant_that_drops_the_supporters_words_is_named(tmp_path: Path) -> None:
    no_words = LETTER_B.replace("{{ supporter.words }}", "")
    renderer, action = make(tmp_path, {"en.j2": LETTER_A, "en.b.j2": no_words})
    (problem,) = renderer.check(action, ("email",), TODAY)
    assert problem.problem.startswith("en.b.j2: the template does not place supporter.words")


# similarity ---------------------------------------------------------------------------------------
def letter(body: str, language: str) -> Letter:
    return Letter("Subject", body, language)


def reworded(rng: random.Random, words: list[str], vocabulary: list[str], share: float) -> list[str]:
    """The words with a ``share`` of them swapped for others, as a lazy second variant would."""
    return [rng.choice(vocabulary) if rng.random() < share else w for w in words]


@pytest.mark.parametrize("seed", range(5))
def test_near_identical_variants_warn_and_different_ones_do_not(seed: int) -> None:
    rng = random.Random(seed)
    vocabulary = [f"w{i}" for i in range(400)]
    first = [rng.choice(vocabulary) for _ in range(rng.randint(150, 300))]
    lazy = reworded(rng, first, vocabulary, 0.05)
    apart = [rng.choice(vocabulary) for _ in range(len(first))]
    # Case and punctuation do not make a copy different.
    shouted = [f"{w.upper()}," for w in lazy]
    texts = {"a": " ".join(first), "b": " ".join(shouted), "c": " ".join(apart)}
    pairs = similarity.resemblances({k: letter(v, "en") for k, v in texts.items()}, "en")
    assert [(r.first, r.second, r.too_close) for r in pairs] == [
        ("a", "b", True),
        ("a", "c", False),
        ("b", "c", False),
    ]


def test_chinese_is_compared_by_characters() -> None:
    root = Path(__file__).resolve().parents[2] / "templates" / "ua-61-21"
    body = root.joinpath("zh-Hans.j2").read_text(encoding="utf-8")
    # A few words swapped: still one text to a filter, though nearly every clause (one "word"
    # when split at spaces and punctuation) changed.
    swaps = {"拘押": "关押", "恳切地": "诚恳地", "立即": "尽快", "的": "之", "人": "者"}
    lazy = body
    for old, new in swaps.items():
        lazy = lazy.replace(old, new)
    rewritten = root.joinpath("zh-Hans.b.j2").read_text(encoding="utf-8")
    close, apart = (
        similarity.resemblances({"a": letter(body, "zh-Hans"), "b": letter(other, "zh-Hans")}, "zh-Hans")[0]
        for other in (lazy, rewritten)
    )
    assert close.too_close and not apart.too_close, (close, apart)
    assert similarity.unit("zh-Hans") == similarity.unit("ja") == "character"
    assert similarity.shingles("新疆人士", "zh") == {("新", "疆", "人"), ("疆", "人", "士")}
    assert similarity.shingles("Free them, now", "en") == {("free", "them", "now")}
