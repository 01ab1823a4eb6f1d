"""``dispatcher check`` as an operator reads it: an action either gets its ``ok`` lines or is held
with the reason, template mistakes are named in the template's terms, and library chatter stays out
of the log."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dispatcher.models import SupporterRecord
from dispatcher.store import open_store
from tests.campaigns.test_campaign_shapes import TEMPLATE
from tests.campaigns.test_cli import cli
from tests.conftest import cli_env
from tests.support.actions import action_data, write_action
from tests.unit.test_render import make
from tests.web.test_controls import outbox

DISPATCHER = str(Path(sys.executable).with_name("dispatcher"))


def letter(body: str) -> str:
    return f"{{% block subject %}}Hello{{% endblock %}}{{% block body %}}{body}{{% endblock %}}"


def check_world(tmp_path: Path, template: str) -> tuple[str, str]:
    """``dispatcher check`` over one action ``a`` with this English template: (stdout, stderr)."""
    make(tmp_path, {"en.j2": template})
    result = cli(cli_env(tmp_path, tmp_path), "check", ok=False)
    return result.stdout, result.stderr


def test_an_action_whose_template_drops_the_supporters_words_is_held(tmp_path: Path) -> None:
    out, err = check_world(tmp_path, letter("{{ target.salutation }},\nFree them.\n{{ supporter.name }}"))
    assert "held: a" in out and "ok: a" not in out
    assert "does not place supporter.words" in err


def test_a_template_typo_is_named_in_the_templates_terms_and_gets_no_ok_line(tmp_path: Path) -> None:
    out, err = check_world(tmp_path, letter("{{ action.titel }} {{ supporter.words }}"))
    assert "ok: a" not in out and "held: a" in out
    assert "unknown variable action.titel (did you mean action.title?)" in err
    assert "dispatcher.letters.render" not in err and "object" not in err


def test_third_party_loggers_stay_at_warning_unless_verbose(tmp_path: Path) -> None:
    env = {**os.environ, **cli_env(tmp_path)}
    fax = ["preview", "ua-61-21-update-1", "--target", "xi-jinping", "--channel", "fax"]
    for verbose in ([], ["-v"]):
        pdf = ["--output", str(tmp_path / "letter.pdf")]
        done = subprocess.run(
            [DISPATCHER, *verbose, *fax, *pdf], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert ("fontTools" in done.stderr) == bool(verbose), done.stderr[-2000:]


WORDS = "Ich kenne ihn seit der Schule."


def send_with_words(tmp_path: Path, template: str, **others: str) -> list[str]:
    """``run --once`` for a supporter who gave their own words for action ``a``: the bodies sent.
    ``others``: further variants of the letter by name (``b=…`` for ``en.b.j2``)."""
    make(tmp_path, {"en.j2": template, **{f"en.{name}.j2": text for name, text in others.items()}})
    env = cli_env(tmp_path, tmp_path)
    cli(env, "db", "upgrade")
    store = open_store(env["DISPATCHER_DATABASE_URL"])
    try:
        now = dt.datetime.now(dt.UTC)
        ann = SupporterRecord(
            "ann@example.net", "Ann Lee", "en", "Oslo", "NO", ("a",), now, words={"a": WORDS}
        )
        store.import_supporters([ann], now)
    finally:
        store.close()
    cli(env, "run", "--once")
    sent = outbox(tmp_path) if (tmp_path / "outbox").exists() else []
    return [m.get_content() for m in sent]


def test_a_running_dispatcher_sends_no_letter_that_would_drop_the_words(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bodies = send_with_words(tmp_path, letter("{{ target.salutation }},\n{{ supporter.name }}"))
    assert bodies == [] and "holding a" in caplog.text and "does not place supporter.words" in caplog.text


def test_the_words_a_supporter_gave_reach_their_letter(tmp_path: Path) -> None:
    bodies = send_with_words(tmp_path, letter("{{ target.salutation }},\n{{ supporter.words }}"))
    assert len(bodies) == 1 and WORDS in bodies[0]


def test_a_bad_plan_is_refused_naming_file_target_and_field_and_holds_only_its_action(tmp_path: Path) -> None:
    """Office hours on a day after the deadline (whatever day the test runs), and a zone that
    does not exist: ``check`` fails naming each; the other action still gets its ok line."""
    now = dt.datetime.now(dt.UTC)
    day = f"{now + dt.timedelta(days=3):%a}"
    deadline = f"{now + dt.timedelta(days=2):%Y-%m-%dT%H:%M:%S+00:00}"
    email = {
        "id": "t",
        "name": "T",
        "salutation": {"en": "Dear T"},
        "email": "t@example.org",
        "channels": ["email"],
    }
    files = {
        "shut": action_data("shut", [email], deadline=deadline, plan={"office_hours": f"{day} 10:00-11:00"}),
        "fine": action_data(
            "fine",
            [email, email | {"id": "us", "country": "US", "plan": {"office_hours": "Mon 09:00-10:00"}}],
        ),
        "mars": action_data("mars", [email | {"timezone": "Mars/Olympus_Mons"}]),
    }
    paths = {name: write_action(tmp_path / "actions", data) for name, data in files.items()}
    for name in files:
        (tmp_path / "templates" / name).mkdir(parents=True)
        (tmp_path / "templates" / name / "en.j2").write_text(TEMPLATE)
    result = cli(cli_env(tmp_path, tmp_path), "check", ok=False)
    assert "held: shut" in result.stdout and "ok: fine × t × email × en" in result.stdout, result.stderr
    assert (
        f"error: {paths['shut']}: plan.office_hours (target t, email): office hours {day} 10:00-11:00 (UTC) "
        "never open before the deadline" in result.stderr
    )
    assert (
        "note: fine × us: no timezone, and US has several: its office hours are in the action's, UTC"
        in result.stdout
    )
    zone = "targets[0].timezone (target t): 'Mars/Olympus_Mons' is not an IANA time zone"
    assert f"error: {paths['mars']}: {zone}" in result.stderr
