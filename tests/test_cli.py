"""The command line, end to end on a real SQLite file and the local Maildir outbox."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import mailbox
import os
import stat
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from dispatcher.cli import main
from dispatcher.models import AttemptResult, Outcome
from dispatcher.store import open_store
from tests.conftest import ROOT, cli_env, never_retry


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path)


def cli(env: dict[str, str], *args: str, ok: bool = True) -> Result:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert (result.exit_code == 0) == ok, result.output
    return result


def test_demo_flow_sends_only_the_demo_to_the_outbox(env: dict[str, str], tmp_path: Path) -> None:
    assert "5 actions checked, no problems" in cli(env, "check").output
    assert (
        "imported 6 supporters"
        in cli(env, "supporters", "import", str(ROOT / "config/demo-supporters.csv")).output
    )
    cli(env, "run", "--once")
    box = mailbox.Maildir(str(tmp_path / "outbox"), create=False)
    messages = [message_from_bytes(m.as_bytes(), policy=policy.default) for m in box]
    assert len(messages) == 6
    assert {str(m["To"]) for m in messages} == {'"President (demo)" <president@example.org>'}
    assert all("ambassador@example.org" in str(m["Cc"]) for m in messages)
    actions = cli(env, "actions").output
    assert "ua-61-21-update-1" in actions and "closed (deadline passed)" in actions
    header = actions.splitlines()[0].split()
    demo = next(line for line in actions.splitlines() if line.startswith("demo-xinjiang")).split()
    assert demo[1] == "active" and demo[len(demo) - len(header) + header.index("SENT")] == "6"
    queue = cli(env, "queue").output
    assert "president-demo" in queue and "sent" in queue
    # A second run sends nothing twice.
    cli(env, "run", "--once")
    assert len(list(mailbox.Maildir(str(tmp_path / "outbox"), create=False))) == 6
    log = json.loads(cli(env, "log", "--format", "json", "--target", "president-demo").output)
    assert len(log) == 6 and {r["outcome"] for r in log} == {"sent"}
    csv_lines = cli(env, "log", "--format", "csv").output.splitlines()
    assert csv_lines[0].startswith("id,delivery_id,action_id") and len(csv_lines) == 7
    summary = cli(env, "log", "--summary").output
    assert "demo-xinjiang  president-demo  email    6" in summary


def test_preview_and_errors(env: dict[str, str]) -> None:
    out = cli(env, "preview", "ua-61-21-update-1", "--target", "xi-jinping", "--lang", "zh-Hant").output
    assert "Language: zh-Hant" in out and "致國家主席習近平" in out
    out = cli(env, "preview", "ua-61-21-update-1", "--target", "nobody", ok=False).output
    assert "has no target 'nobody'" in out
    out = cli(env, "pause", "no-such-action", ok=False).output
    assert "no action 'no-such-action'" in out


def test_controls(env: dict[str, str]) -> None:
    cli(env, "supporters", "import", str(ROOT / "config/demo-supporters.csv"))
    assert "paused" in cli(env, "pause", "demo-xinjiang").output
    assert "only an active action can be paused" in cli(env, "pause", "demo-xinjiang", ok=False).output
    cli(env, "run", "--once")
    assert "pending" in cli(env, "queue").output or "sent" not in cli(env, "queue").output
    assert "resumed" in cli(env, "resume", "demo-xinjiang").output
    out = cli(env, "extend", "ua-61-21-update-1", "2020-01-01", ok=False).output
    assert "in the past" in out
    assert "closed; 0 pending" in cli(env, "close", "demo-xinjiang").output
    assert "only a paused action" in cli(env, "resume", "demo-xinjiang", ok=False).output
    assert "closed (by" in cli(env, "actions").output


def test_bad_action_file_is_reported_by_check(env: dict[str, str], tmp_path: Path) -> None:
    actions = tmp_path / "actions"
    actions.mkdir()
    (actions / "bad.yaml").write_text(
        "id: bad\ntitle: x\ndeadline: 2030-01-01\nlanguages: [en]\ntargets: []\n"
    )
    out = cli({**env, "DISPATCHER_ACTIONS_DIR": str(actions)}, "check", ok=False).output
    assert "bad.yaml: targets:" in out and "at least 1 item" in out


# Stored text is not ours: an SMTP server's reply is kept verbatim in the attempt's detail. -------
HOSTILE = [
    '=HYPERLINK("http://x","y")',
    "\x1b[31mred\x1b[0m",
    "+1-2",
    "  @SUM(1)",
    "\x9b2J wiped",
    "invoice\u202egnp.exe",
    "450 first line\r\n450 second line",
]
RAW_CONTROLS = ["\x1b", "\x9b", "\r", "\u202e"]


def store_replies(env: dict[str, str], details: list[str]) -> None:
    """Send the demo letters to the Maildir, then log a retry with each reply on one of them."""
    cli(env, "supporters", "import", str(ROOT / "config/demo-supporters.csv"))
    cli(env, "run", "--once")
    sent = json.loads(cli(env, "log", "--format", "json").output)[0]
    now = dt.datetime.now(dt.UTC)
    store = open_store(env["DISPATCHER_DATABASE_URL"])
    try:
        store.record(
            "a-server",
            [
                AttemptResult(
                    sent["delivery_id"],
                    sent["action_id"],
                    sent["target_id"],
                    "email",
                    now,
                    now,
                    Outcome.RETRY,
                    # A negative number we write is an int: it must stay a number in the CSV.
                    code=-451 if detail.startswith("+") else 451,
                    detail=detail,
                )
                for detail in details
            ],
            never_retry,
        )
    finally:
        store.close()


def test_csv_log_cells_cannot_become_formulas(env: dict[str, str]) -> None:
    store_replies(env, HOSTILE)
    out = cli(env, "log", "--format", "csv").output.replace("\r\n", "\n")  # csv's line ends
    assert not any(c in out for c in RAW_CONTROLS)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 6 + len(HOSTILE)
    for row in rows:
        for name, cell in row.items():
            stripped = cell.lstrip()
            numeric = name in ("id", "delivery_id", "code") and stripped.lstrip("-").isdigit()
            assert numeric or not stripped.startswith(("=", "+", "-", "@")), (name, cell)
    details = [r["detail"] for r in rows if r["worker"] == "a-server"]
    assert details[0] == '\'=HYPERLINK("http://x","y")'
    assert details[2] == "'+1-2" and details[3] == "'  @SUM(1)"
    assert details[1] == "\\x1b[31mred\\x1b[0m"
    assert details[6] == "450 first line\\r\n450 second line"  # the line break itself is data
    assert {r["code"] for r in rows if r["worker"] == "a-server"} == {"451", "-451"}  # numbers stay numbers


def test_table_log_shows_controls_escaped_and_keeps_one_line_per_attempt(env: dict[str, str]) -> None:
    store_replies(env, HOSTILE)
    out = cli(env, "log").output
    assert not any(c in out for c in RAW_CONTROLS)
    assert "\\x1b[31mred" in out and "invoice\\u202egnp.exe" in out and "\\x9b2J" in out
    assert len(out.splitlines()) == 1 + 6 + len(HOSTILE)
    assert all(line.isprintable() for line in out.splitlines())


def test_json_log_keeps_the_reply_exactly_but_never_raw(env: dict[str, str]) -> None:
    store_replies(env, HOSTILE)
    out = cli(env, "log", "--format", "json").output
    assert not any(c in out for c in RAW_CONTROLS)
    assert all(line.isprintable() for line in out.splitlines())
    details = [r["detail"] for r in json.loads(out) if r["worker"] == "a-server"]
    assert details == HOSTILE


def test_personal_data_files_are_owner_only_whatever_the_umask(env: dict[str, str], tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        cli(env, "supporters", "import", str(ROOT / "config/demo-supporters.csv"))
        cli(env, "run", "--once")
    finally:
        os.umask(old)
    for name in ("d.db", "d.db-wal", "d.db-shm"):
        path = tmp_path / name
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
    (tmp_path / "old.db").write_bytes(b"")
    (tmp_path / "old.db").chmod(0o644)
    cli({**env, "DISPATCHER_DATABASE_URL": f"sqlite:///{tmp_path / 'old.db'}"}, "queue")
    assert stat.S_IMODE((tmp_path / "old.db").stat().st_mode) == 0o600  # tightened when opened


def test_preview_as_finds_the_supporter_whatever_the_case(env: dict[str, str]) -> None:
    cli(env, "supporters", "import", str(ROOT / "config/demo-supporters.csv"))
    out = cli(
        env, "preview", "demo-xinjiang", "--target", "president-demo", "--as", "Lin.XiaoWen@Example.NET"
    ).output
    assert "林小文" in out
