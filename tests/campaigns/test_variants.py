"""Letter variants as operators and officials see them: the dispatcher sends each supporter's
letters, to every target and on every retry, in one variant; ``check`` warns of variants too
alike to pass a filter as different letters (English and Chinese); ``preview --variant``."""

from __future__ import annotations

import random
import shutil
from collections import defaultdict
from pathlib import Path

import pytest

from dispatcher.letters import variants
from dispatcher.models import SupporterRecord
from dispatcher.sending.runtime import utcnow
from dispatcher.store import open_store
from tests.campaigns.test_check import letter, send_with_words
from tests.campaigns.test_cli import cli
from tests.campaigns.test_email_smtp import delivery_rows, expected_ids, later, make_settings, run_once
from tests.conftest import ROOT, cli_env
from tests.support import wire
from tests.support.actions import action_data, write_action
from tests.support.smtp_server import SmtpServer
from tests.unit.test_render import make

ACTION = "v"
TARGETS = ("t1", "t2")
BODY = "{{ target.salutation }},\nVARIANT-%s\n{{ supporter.words }}\n{{ supporter.name }}"


def supporters(rng: random.Random, n: int) -> list[SupporterRecord]:
    opted = utcnow()
    return [
        SupporterRecord(
            f"{rng.getrandbits(32):x}.{i}@example.net", f"S {i}", "en", "Oslo", "NO", (ACTION,), opted
        )
        for i in range(n)
    ]


def two_variant_world(root: Path) -> None:
    """Action ``v`` to two officials by email, in English, its letter in variants a and b."""
    targets = [
        {
            "id": t,
            "name": t.upper(),
            "email": f"{t}@example.org",
            "salutation": {"en": f"Dear {t}"},
            "channels": ["email"],
        }
        for t in TARGETS
    ]
    write_action(root / "actions", action_data(ACTION, targets))
    folder = root / "templates" / ACTION
    folder.mkdir(parents=True)
    for name in ("a", "b"):
        subject = f"{{% block subject %}}Free them ({name}){{% endblock %}}"
        body = f"{{% block body %}}{BODY % name.upper()}{{% endblock %}}"
        (folder / variants.file_name("en", name)).write_text(subject + body, encoding="utf-8")


@pytest.mark.parametrize("seed", [7])
async def test_each_supporter_gets_one_variant_to_every_target_and_on_retry(
    tmp_path: Path, db_url: str, seed: int
) -> None:
    rng = random.Random(seed)
    two_variant_world(tmp_path)
    people = supporters(rng, 40)
    store = open_store(db_url)
    try:
        store.import_supporters(people, utcnow())
        with SmtpServer() as smtp:
            # A third of the first letters are refused for now: they go again on the next run.
            smtp.fail(at="data", reply="451", messages=set(range(1, 2 * len(people) + 1, 3)))
            settings = make_settings(
                tmp_path, smtp.url, database_url=db_url, templates_dir=tmp_path / "templates"
            )
            await run_once(settings, store)
            await run_once(settings, store, clock=later(600))
            received = smtp.received()
        rows = {r.id: r for r in delivery_rows(store)}
        by_message = {mid: rows[i] for i, mid in expected_ids(store).items()}
    finally:
        store.close()
    assert len(received) == 2 * len(people) and {r.status for r in rows.values()} == {"sent"}
    assert wire.strangers(received, wire.signers(db_url), direct=False) == []
    assert sum(r.attempts == 2 for r in rows.values()) >= len(people) // 2  # retries happened
    got: dict[str, set[str]] = defaultdict(set)
    for mail in received:
        row = by_message[mail.message_id or ""]
        msg = mail.message()
        (variant,) = {v for v in "ab" if f"VARIANT-{v.upper()}" in msg.get_content()}
        assert msg["Subject"] == f"Free them ({variant})"
        assert variant == variants.choose(["a", "b"], ACTION, row.email), row
        got[row.email].add(variant)
    assert all(len(v) == 1 for v in got.values()) and len(got) == len(people)
    spread = [next(iter(v)) for v in got.values()]
    assert min(spread.count("a"), spread.count("b")) >= len(people) // 4, spread


# check ------------------------------------------------------------------------------------------
def lazy_copy(text: str, swaps: dict[str, str]) -> str:
    """The text with a few words swapped: what a second variant written in a hurry looks like."""
    for old, new in swaps.items():
        text = text.replace(old, new)
    return text


def test_check_warns_of_near_identical_english_variants_and_not_of_different_ones(tmp_path: Path) -> None:
    first = (ROOT / "templates" / "eu-xinjiang-2018" / "en.j2").read_text(encoding="utf-8")
    apart = (ROOT / "templates" / "petition-xuar-camps" / "en.j2").read_text(encoding="utf-8")
    hurried = lazy_copy(first, {"alarmed": "worried", "Credible": "Reliable", "families": "relatives"})
    make(tmp_path, {"en.j2": first, "en.b.j2": hurried, "en.c.j2": apart})
    result = cli(cli_env(tmp_path, tmp_path), "check")
    assert "ok: a × t × email × en (variants a, b, c)" in result.stdout
    assert "similarity: a × t × en: a~b 0." in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "variants a and b share" in warnings[0], result.stderr
    assert "3-word runs" in warnings[0]


def test_check_warns_of_near_identical_chinese_variants_and_not_of_different_ones(tmp_path: Path) -> None:
    (tmp_path / "actions").mkdir()
    shutil.copy(ROOT / "config" / "actions" / "ua-61-21.yaml", tmp_path / "actions")
    folder = tmp_path / "templates" / "ua-61-21"
    shutil.copytree(ROOT / "templates" / "ua-61-21", folder)
    first = (folder / "zh-Hans.j2").read_text(encoding="utf-8")
    swaps = {"拘押": "关押", "恳切地": "诚恳地", "立即": "尽快", "的": "之", "人": "者"}
    (folder / "zh-Hans.c.j2").write_text(lazy_copy(first, swaps), encoding="utf-8")
    result = cli(cli_env(tmp_path, tmp_path), "check")
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    # One per target written to in Chinese: a and c; b, written apart, warns of nothing.
    assert len(warnings) == 2 and all("variants a and c share" in w for w in warnings), result.stderr
    assert all("3-character runs" in w for w in warnings)
    assert "ok: ua-61-21 × xi-jinping × email × zh-Hans (variants a, b, c)" in result.stdout


def test_a_running_dispatcher_holds_an_action_whose_other_variant_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = letter("{{ target.salutation }},\n{{ supporter.words }}")
    assert send_with_words(tmp_path, good, b=letter("{{ target.salutaton }} {{ supporter.words }}")) == []
    assert "holding a" in caplog.text and "en.b.j2 line 1: unknown variable target.salutaton" in caplog.text


def test_a_template_file_that_names_no_variant_is_noted(tmp_path: Path) -> None:
    make(tmp_path, {"en.j2": letter("{{ supporter.words }}"), "en.formal.j2": "", "de.b.j2": ""})
    out = cli(cli_env(tmp_path, tmp_path), "check").stdout
    assert "note: a: a/de.b.j2 is not used" in out and "note: a: a/en.formal.j2 is not used" in out


# preview ----------------------------------------------------------------------------------------
SUBJECTS = {"a": "请释放在新疆被任意拘押的人士", "b": "恳请让新疆被拘押者回到家人身边"}


def test_preview_shows_the_variant_asked_the_first_or_the_supporters_own(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    show = ("preview", "ua-61-21", "--target", "xi-jinping")
    for variant, subject in SUBJECTS.items():
        out = cli(env, *show, "--variant", variant).output
        assert subject in out and f"Variant: {variant} (of a, b)" in out
    assert SUBJECTS["a"] in cli(env, *show).output  # the sample signer: the first variant
    assert "no variant z (variants: a, b)" in cli(env, *show, "--variant", "z", ok=False).output
    # A supporter's own variant, which the dispatcher would send them.
    email = next(
        e for i in range(100) if variants.choose(["a", "b"], "ua-61-21", e := f"s{i}@example.net") == "b"
    )
    cli(env, "db", "upgrade")
    store = open_store(env["DISPATCHER_DATABASE_URL"])
    try:
        store.import_supporters(
            [SupporterRecord(email, "Ann", "en", "", "", ("ua-61-21",), utcnow())], utcnow()
        )
    finally:
        store.close()
    out = cli(env, *show, "--as", email).output
    assert SUBJECTS["b"] in out and "Variant: b (of a, b)" in out
