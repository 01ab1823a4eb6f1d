"""Server replies that quote a supporter's name as it went out on the wire (white space
collapsed, RFC 2047 encoded words, a quoted string): forget cuts every form out of the log, its
CSV and the database file; the dashboard's viewers never read them."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from dispatcher.accounts import Role
from dispatcher.cli import main
from dispatcher.people.csv_import import COLUMNS
from dispatcher.store import open_store
from tests.conftest import cli_env
from tests.smtp_server import QuotingHandler, SmtpServer
from tests.test_campaign_shapes import write_actions
from tests.web_client import add_users, client, log_in, web_settings

# Names whose wire form differs from the stored one: runs of spaces and a tab (collapsed),
# non-ASCII long enough for two encoded words, and punctuation that makes a quoted string.
PEOPLE = {
    "ada.spaced@example.net": "Ada   Lovelace-Byron  Kingsley",
    "zoe.wide@example.net": "Zoë Łukasiewicz-Ørsted 林小文 Ǆemal Ünalová",
    "bob.quoted@example.net": 'Robert "Bob" Brown, Jr.',
}
QUOTED = re.compile(r"from (.*) <letters@example\.org>")


def _csv(people: dict[str, str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for email, name in people.items():
        writer.writerow([email, name, "en", "", "", "all", "email", "v1", "2025-01-01T00:00:00+00:00"])
    return out.getvalue()


@pytest.fixture
def refused_world(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Every supporter's letter sent and refused by a server quoting the From as it was sent."""
    write_actions(tmp_path, {"act": ["t1"]})
    (tmp_path / "s.csv").write_text(_csv(PEOPLE), encoding="utf-8")
    with SmtpServer(QuotingHandler()) as smtp:
        env = cli_env(tmp_path, tmp_path, DISPATCHER_SMTP_URL=smtp.url)
        runner = CliRunner()
        imported = runner.invoke(main, ["supporters", "import", str(tmp_path / "s.csv")], env=env)
        assert imported.exit_code == 0, imported.output
        ran = runner.invoke(main, ["run", "--once"], env=env)
        assert ran.exit_code == 0, ran.output
    yield env


def _logs(env: dict[str, str]) -> str:
    formats = ("table", "csv", "json")
    return "".join(CliRunner().invoke(main, ["log", "--format", f], env=env).output for f in formats)


def _wire_names(env: dict[str, str]) -> set[str]:
    """The From names the server quoted, whole and word by word (a fold may split them)."""
    rows = json.loads(CliRunner().invoke(main, ["log", "--format", "json"], env=env).output)
    quoted = {m.group(1) for r in rows if (m := QUOTED.search(r["detail"]))}
    return quoted | {w for q in quoted for w in q.split() if w.startswith("=?")}


def test_forget_cuts_the_name_out_in_every_form_it_went_out_in(refused_world: dict[str, str]) -> None:
    env = refused_world
    sent = _wire_names(env)
    # The server quoted forms the stored names do not contain: collapsed, encoded, quoted.
    assert "Ada Lovelace-Byron Kingsley" in sent
    assert sum(w.startswith("=?utf-8?b?") for w in sent) >= 2
    assert '"Robert \\"Bob\\" Brown, Jr."' in sent
    runner = CliRunner()
    for email in PEOPLE:
        gone = runner.invoke(main, ["supporters", "forget", email], env=env)
        assert gone.exit_code == 0, gone.output
    logs = _logs(env)
    assert logs.count("[supporter]") >= len(PEOPLE)
    files = [Path(env["DISPATCHER_DATABASE_URL"].removeprefix("sqlite:///"))]
    files.append(files[0].with_name(files[0].name + "-wal"))
    held = b"".join(f.read_bytes() for f in files if f.exists())
    for form in sent:
        assert form not in logs, f"{form!r} still in the log"
        assert form.encode() not in held, f"{form!r} still in the database file"


async def test_viewers_read_replies_without_the_supporters_in_them(
    refused_world: dict[str, str], tmp_path: Path
) -> None:
    env = refused_world
    named = _wire_names(env) | set(PEOPLE)
    store = open_store(env["DISPATCHER_DATABASE_URL"], migrate=False)
    add_users(store)
    world = {"actions_dir": tmp_path / "actions", "templates_dir": tmp_path / "templates"}
    settings = web_settings(tmp_path, database_url=env["DISPATCHER_DATABASE_URL"], **world)
    try:
        async with client(settings, store) as web:
            assert (await log_in(web, Role.VIEWER.label)).status_code == 303
            pages = {path: (await web.get(path)).text for path in ("/log", "/log.csv", "/actions/act")}
    finally:
        store.close()
    for path, page in pages.items():
        assert "[supporter]" in page and "5.7.1 Message refused" in page, path
        shown = html.unescape(page).replace('""', '"')  # as the page and the CSV cell read
        for text in named:
            assert text not in shown, f"{text!r} shown on {path}"
    # The log itself keeps the replies as the servers sent them, for the CLI.
    assert all(text in _logs(env) for text in _wire_names(env))
