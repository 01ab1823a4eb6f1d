"""Fax through the real dispatcher with the file provider: submitted, then resolved by polling;
after a crash between the provider's acceptance and our commit, no second fax."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import yaml

from dispatcher.channels import make_channels
from dispatcher.channels.fax import fax_reference
from dispatcher.sending.runtime import Dispatcher, utcnow
from dispatcher.settings import Settings
from dispatcher.store import Store, open_store
from tests.campaigns.test_campaign_shapes import TEMPLATE, supporters
from tests.campaigns.test_cli import cli
from tests.conftest import cli_env
from tests.support import actions
from tests.unit.test_faxpdf import MISSING

pytestmark = pytest.mark.skipif(bool(MISSING), reason=MISSING)

# Ofcom keeps 020 7946 0000–0999 for drama: valid numbers that reach nobody.
MINISTER_FAX = "+442079460123"
EMBASSY_FAX = "+442079460456"


def write_action(tmp_path: Path, deadline: str = "2035-01-01") -> Settings:
    targets = [
        {
            "id": "minister",
            "name": "Minister",
            "languages": ["en"],
            "salutation": {"en": "Dear Minister"},
            "email": "minister@example.org",
            "fax": "020 7946 0123",
            "country": "GB",
            "channels": ["email", "fax"],
        },
        {
            "id": "embassy",
            "name": "Embassy",
            "role": "cc",
            "salutation": {"en": "Dear Ambassador"},
            "fax": EMBASSY_FAX,
            "channels": ["fax"],
        },
    ]
    actions.write_action(
        tmp_path / "actions", actions.action_data("a", targets, title="Fax action", deadline=deadline)
    )
    (tmp_path / "templates" / "a").mkdir(parents=True)
    (tmp_path / "templates" / "a" / "en.j2").write_text(TEMPLATE)
    return Settings.model_validate(
        {
            "database_url": f"sqlite:///{tmp_path / 'd.db'}",
            "actions_dir": tmp_path / "actions",
            "templates_dir": tmp_path / "templates",
            "outbox": tmp_path / "outbox",
            "fax_outbox": tmp_path / "fax-outbox",
        }
    )


async def run_once(config: Settings, store: Store, worker: str = "w") -> Dispatcher:
    dispatcher = Dispatcher(config, store, make_channels(config, store), worker_id=worker)
    await dispatcher.run_once()
    return dispatcher


async def test_faxes_are_submitted_then_resolved_and_logged(tmp_path: Path) -> None:
    config = write_action(tmp_path)
    store = open_store(config.database_url)
    store.import_supporters(supporters(3), utcnow())
    await run_once(config, store)
    counts = Counter((r.target_id, r.channel, r.status) for r in store.queue_counts() for _ in range(r.count))
    log = list(store.attempt_log())
    assert store.fax_pages() == [("a", "file", 6)]
    store.close()
    assert "file:6" in cli(cli_env(tmp_path, world=tmp_path), "actions").output  # pages per provider
    # The cc target has no email letters of its own but gets its own fax.
    assert counts == {
        ("minister", "email", "sent"): 3,
        ("minister", "fax", "sent"): 3,
        ("embassy", "fax", "sent"): 3,
    }
    faxes = sorted((tmp_path / "fax-outbox").glob("*.pdf"))
    assert len(faxes) == 6
    assert all(f.stat().st_mode & 0o077 == 0 for f in faxes)
    fax_rows = [a for a in log if a.channel == "fax"]
    assert Counter(a.outcome for a in fax_rows) == {"submitted": 6, "sent": 6}
    assert {a.destination for a in fax_rows} == {MINISTER_FAX, EMBASSY_FAX}
    assert all(a.provider == "file" and a.job_id for a in fax_rows)
    assert all(a.pages == 1 for a in fax_rows if a.outcome == "submitted")
    command = ["pdftotext", str(faxes[0]), "-"]
    info = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, check=True)
    assert "+44 20 7946" in info.stdout and "Supporter" in info.stdout


async def test_after_a_crash_the_provider_is_asked_before_faxing_again(tmp_path: Path) -> None:
    config = write_action(tmp_path)
    store = open_store(config.database_url)
    store.import_supporters(supporters(1), utcnow())
    secret = store.instance_secret()
    # A first run whose process "died" right after the provider took every fax: the PDFs exist,
    # the store still has the deliveries leased by the dead worker.
    first = Dispatcher(config, store, make_channels(config, store), worker_id="dead")
    await first.plan()
    dead = Dispatcher(config, store, make_channels(config, store), worker_id="dead")
    dead.catalogue.reload()
    groups = dead.catalogue.groups(("fax",), dead.channels)
    while await dead.feeder.fill(groups):
        items = [q.items.get_nowait() for q in dead.feeder.queues.values() for _ in range(q.items.qsize())]
        # Together, as the senders would: one after the other, a slow first PDF on a busy
        # machine would make the second miss its start-by time and go back unsent.
        await asyncio.gather(*(dead.sender.send(item) for item in items if item is not None))
    dead.db.shutdown()
    first.db.shutdown()
    written = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "fax-outbox").glob("*.pdf")}
    assert len(written) == 2
    # The restart under the same worker id resends what was in flight: it finds the faxes.
    await run_once(config, store, worker="dead")
    log = list(store.attempt_log())
    rows = [(a.outcome, a.target_id) for a in log if a.channel == "fax"]
    store.close()
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "fax-outbox").glob("*.pdf")} == written
    assert Counter(o for o, _ in rows) == {"interrupted": 2, "submitted": 2, "sent": 2}
    assert any("already submitted" in a.detail for a in log if a.outcome == "submitted")
    assert fax_reference(secret, 1) != fax_reference(secret, 2)


async def test_no_fax_is_submitted_after_the_deadline(tmp_path: Path) -> None:
    deadline = utcnow() + dt.timedelta(seconds=3)
    config = write_action(tmp_path, deadline.isoformat())
    store = open_store(config.database_url)
    store.import_supporters(supporters(40), utcnow())
    await run_once(config, store)  # one fax at a time per number: far fewer than 80 in 3 s
    submitted = [a for a in store.attempt_log() if a.outcome == "submitted"]
    counts = Counter(r.status for r in store.queue_counts() if r.channel == "fax" for _ in range(r.count))
    store.close()
    assert submitted and all(a.started_at < deadline for a in submitted)
    assert counts["expired"] > 0 and counts["sent"] == len(submitted)


@pytest.mark.parametrize(
    ("fax", "country", "problem"),
    [("020 7946 012", "GB", "not a valid phone number"), ("020 7946 0123", None, "not a phone number")],
)
def test_a_bad_fax_number_stops_its_action_alone_at_check(
    tmp_path: Path, fax: str, country: str | None, problem: str
) -> None:
    write_action(tmp_path)
    bad = yaml.safe_load((tmp_path / "actions" / "a.yaml").read_text())
    bad["id"] = "b"
    bad["targets"][0].update(fax=fax, country=country)
    (tmp_path / "actions" / "b.yaml").write_text(yaml.safe_dump(bad))
    (tmp_path / "templates" / "b").mkdir()
    (tmp_path / "templates" / "b" / "en.j2").write_text(TEMPLATE)
    out = cli(cli_env(tmp_path, world=tmp_path), "check", ok=False).output
    line = next(line for line in out.splitlines() if "b.yaml" in line)
    assert "targets[0] (target minister): fax:" in line and problem in line, out
    assert "a.yaml" not in out
    assert "a " in cli(cli_env(tmp_path, world=tmp_path), "actions").output  # the good one loads


def test_check_holds_fax_actions_when_the_font_is_missing(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from dispatcher.cli import main

    write_action(tmp_path)
    env = cli_env(tmp_path, tmp_path, DISPATCHER_FAX_FONT=str(tmp_path / "no-font.ttc"))
    result = CliRunner().invoke(main, ["check"], env=env)
    assert result.exit_code == 1 and "a: fax letters need the font" in result.output
