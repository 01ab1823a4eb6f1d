"""The running dispatcher: held actions, clean shutdown on SIGTERM, deadlines in --once."""

from __future__ import annotations

import asyncio
import datetime as dt
import mailbox
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from dispatcher.actions import controls
from dispatcher.actions.files import load_actions
from dispatcher.channels import make_channels
from dispatcher.models import Signer
from dispatcher.people.csv_import import KnownScopes, import_file
from dispatcher.sending.runtime import Dispatcher
from dispatcher.settings import Settings
from dispatcher.store import open_store

ACTION = """
id: {id}
title: Test action {id}
deadline: {deadline}
status: active
languages: [en]
targets:
  - id: pres
    name: President
    salutation: {{en: Dear President}}
    email: pres@example.org
    channels: [email]
"""
TEMPLATE = (
    "{% block subject %}Please act{% endblock %}"
    "{% block body %}{{ target.salutation }},\n"
    "{% if supporter.words %}{{ supporter.words }}{% endif %}{{ supporter.name }}\n{% endblock %}"
)


def setup(tmp_path: Path, n: int, actions: dict[str, str], **settings: object) -> Settings:
    (tmp_path / "actions").mkdir()
    for action_id, deadline in actions.items():
        (tmp_path / "actions" / f"{action_id}.yaml").write_text(
            ACTION.format(id=action_id, deadline=deadline)
        )
        folder = tmp_path / "templates" / action_id
        folder.mkdir(parents=True)
        (folder / "en.j2").write_text(TEMPLATE)
    rows = "".join(
        f"p{i}@example.net,Person {i},en,,,all,email;fax,v1,2025-01-01T00:00:00+00:00\n" for i in range(n)
    )
    (tmp_path / "s.csv").write_text(
        "email,name,language,city,country,scope,channels,consent_version,opted_in_at\n" + rows
    )
    config = Settings.model_validate(
        {
            "database_url": f"sqlite:///{tmp_path / 'd.db'}",
            "actions_dir": tmp_path / "actions",
            "templates_dir": tmp_path / "templates",
            "outbox": tmp_path / "outbox",
            **settings,
        }
    )
    store = open_store(config.database_url)
    import_file(store, tmp_path / "s.csv", KnownScopes(frozenset(actions)), dt.datetime.now(dt.UTC))
    store.close()
    return config


def counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("select status, count(*) from deliveries group by status")).all()
    engine.dispose()
    return {status: n for status, n in rows}


async def test_an_action_with_a_broken_template_sends_nothing_while_others_send(tmp_path: Path) -> None:
    config = setup(tmp_path, 5, {"good": "2035-01-01", "broken": "2035-01-01"})
    (tmp_path / "templates" / "broken" / "en.j2").write_text(
        "{% block subject %}x{% endblock %}{% block body %}{{ supporter.nickname }}{% endblock %}"
    )
    store = open_store(config.database_url)
    tally = await Dispatcher(config, store, make_channels(config, store)).run_once()
    store.close()
    assert tally.counts["sent"] == 5
    assert counts(config.database_url) == {"sent": 5}  # nothing planned for the held action
    assert len(list(mailbox.Maildir(str(tmp_path / "outbox"), create=False))) == 5


async def test_once_stops_at_the_deadline_and_expires_the_rest(tmp_path: Path) -> None:
    deadline = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    config = setup(tmp_path, 40, {"soon": deadline}, rate_per_target=5.0, burst_per_target=1)
    store = open_store(config.database_url)
    started = time.monotonic()
    tally = await asyncio.wait_for(Dispatcher(config, store, make_channels(config, store)).run_once(), 30)
    store.close()
    assert time.monotonic() - started < 10
    final = counts(config.database_url)
    assert 5 <= tally.counts["sent"] <= 20 and final["sent"] == tally.counts["sent"]
    assert final["expired"] == 40 - final["sent"] and set(final) == {"sent", "expired"}
    assert len(list(mailbox.Maildir(str(tmp_path / "outbox"), create=False))) == final["sent"]


def test_sigterm_stops_cleanly_and_hands_back_unsent_claims(tmp_path: Path) -> None:
    config = setup(tmp_path, 60, {"slow": "2035-01-01"})
    env = {
        **os.environ,
        "DISPATCHER_SETTINGS": str(tmp_path / "none.toml"),
        "DISPATCHER_DATABASE_URL": config.database_url,
        "DISPATCHER_ACTIONS_DIR": str(config.actions_dir),
        "DISPATCHER_TEMPLATES_DIR": str(config.templates_dir),
        "DISPATCHER_OUTBOX": str(config.outbox),
        "DISPATCHER_RATE_PER_TARGET": "10",
        "DISPATCHER_BURST_PER_TARGET": "1",
    }
    exe = shutil.which("dispatcher", path=str(Path(sys.executable).parent)) or "dispatcher"
    proc = subprocess.Popen([exe, "run"], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while counts(config.database_url).get("sent", 0) < 10:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in err
    final = counts(config.database_url)
    assert "sending" not in final and final["sent"] + final["pending"] == 60
    assert len(list(mailbox.Maildir(str(config.outbox), create=False))) == final["sent"]


async def test_a_template_broken_while_running_holds_the_action_at_the_next_reload(tmp_path: Path) -> None:
    config = setup(tmp_path, 3, {"live": "2035-01-01"})
    store = open_store(config.database_url)
    dispatcher = Dispatcher(config, store, make_channels(config, store))
    catalogue = dispatcher.catalogue
    catalogue.reload()
    assert catalogue.held == {}
    # Sending renders (and so caches) the template, as a running dispatcher does between reloads.
    action = catalogue.loaded.actions["live"]
    signer = Signer("Ann", "a@example.net", "", "", "en")
    catalogue.renderer.render(action, action.target("pres"), "en", signer, dt.date.today())
    (tmp_path / "templates" / "live" / "en.j2").write_text(
        "{% block subject %}x{% endblock %}{% block body %}{{ supporter.nmae }}{% endblock %}"
    )
    catalogue.reload()
    assert list(catalogue.held) == ["live"] and "nmae" in str(catalogue.held["live"][0])
    assert "live" not in catalogue.open
    store.close()


async def test_extend_after_the_deadline_sends_the_expired_letters(tmp_path: Path) -> None:
    deadline = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    config = setup(tmp_path, 6, {"late": deadline}, rate_per_target=2.0, burst_per_target=1)
    store = open_store(config.database_url)

    async def run() -> None:
        await Dispatcher(config, store, make_channels(config, store)).run_once()

    await run()
    first = counts(config.database_url)
    assert first.get("expired", 0) > 0 and first["sent"] + first["expired"] == 6
    action = load_actions(config.actions_dir).actions["late"]
    revived = controls.extend(store, action, dt.date(2035, 1, 1), "staff", dt.datetime.now(dt.UTC))
    assert revived == first["expired"]
    config = config.model_copy(update={"rate_per_target": 1000.0, "burst_per_target": 1000})
    await run()
    store.close()
    assert counts(config.database_url) == {"sent": 6}
    assert len(list(mailbox.Maildir(str(tmp_path / "outbox"), create=False))) == 6


async def test_a_target_copied_on_two_targets_letters_is_paced_once(tmp_path: Path) -> None:
    config = setup(tmp_path, 20, {"shared": "2035-01-01"}, burst_per_target=3, rate_per_target=0.001)
    (tmp_path / "actions" / "shared.yaml").write_text(
        ACTION.format(id="shared", deadline="2035-01-01")
        + """  - id: minister
    name: Minister
    salutation: {en: Dear Minister}
    email: minister@example.org
    channels: [email]
  - id: amb
    name: Ambassador
    role: cc
    salutation: {en: Dear Ambassador}
    email: amb@example.org
    channels: [email]
"""
    )
    store = open_store(config.database_url)
    dispatcher = Dispatcher(config, store, make_channels(config, store))
    assert await dispatcher.plan() == 40
    groups = dispatcher.catalogue.groups(("email",), dispatcher.channels)
    queued: list[int] = []
    while await dispatcher.feeder.fill(groups):
        queued += dispatcher.feeder.drain()
    dispatcher.db.shutdown()
    store.close()
    # Letters to the president and to the minister are all copied to the ambassador, whose
    # burst of three is shared by both groups, not granted to each.
    assert {g.target_id for g in groups} == {"pres", "minister"}
    assert len(queued) == 3
