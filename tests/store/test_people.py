"""Supporters' rights: withdrawing consent stops a running dispatch; export shows everything
held; forget erases the person down to the database file's bytes and keeps the counts."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

from click.testing import CliRunner

from dispatcher.channels import make_channels
from dispatcher.cli import main
from dispatcher.models import Outcome, SupporterRecord, Terms
from dispatcher.people import fields
from dispatcher.sending.runtime import Dispatcher, utcnow
from dispatcher.store import Store, open_store
from tests.campaigns.test_campaign_shapes import settings, supporters, write_actions
from tests.conftest import cli_env, never_retry
from tests.store.test_store_contract import NOW, people, result, take
from tests.support.smtp_server import SmtpServer

PERSON = SupporterRecord(
    "zelda.forget@example.net", "Zelda Quixotic-Forgettable", "en", "Ulaanbaatar", "MN", ("all",), NOW
)


WORDS = "Quokka paragraph 7731: 请释放他们"


def statuses_of(store: Store) -> Counter[str]:
    return Counter(r.status for r in store.queue_counts() for _ in range(r.count))


async def test_a_withdrawn_consent_stops_the_letters_in_a_running_dispatch(tmp_path: Path) -> None:
    write_actions(tmp_path, {f"a{n}": [f"t{n}"] for n in range(12)})
    with SmtpServer() as smtp:
        config = settings(tmp_path, smtp.url, rate_global=3.0)  # 24 letters: about 8 seconds
        store = open_store(config.database_url)
        store.import_supporters(supporters(2), utcnow())
        dispatcher = Dispatcher(config, store, make_channels(config, store), worker_id="w")
        task = asyncio.create_task(dispatcher.run_once())
        while sum(r.reply_to == "s1@example.net" for r in smtp.received()) < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # the server runs in its own thread: nothing to await
        revoked_at = time.time()
        cancelled = await asyncio.to_thread(store.people.revoke, "s1@example.net", utcnow(), "cli")
        await asyncio.wait_for(task, 60)
        received = smtp.received()
        counts = statuses_of(store)
        store.close()
    late = [r for r in received if r.reply_to == "s1@example.net" and r.at > revoked_at + 1.5]
    assert not late, f"{len(late)} letters sent in a withdrawn name"
    sent_by = Counter(r.reply_to for r in received)
    assert sent_by["s0@example.net"] == 12 and cancelled is not None and cancelled > 0
    assert counts == {"sent": 12 + sent_by["s1@example.net"], "cancelled": 12 - sent_by["s1@example.net"]}


def test_export_shows_everything_held_and_forget_erases_it_keeping_the_counts(store: Store) -> None:
    store.import_supporters([PERSON, *people(1)], NOW)
    store.plan("act", [("t1", "email")], NOW)
    claims = take(store, "w")
    store.record("w", [result(c.delivery_id, Outcome.SENT) for c in claims], never_retry)
    held = store.people.export("Zelda.Forget@example.net")
    assert held is not None and held["name"] == PERSON.name and held["city"] == "Ulaanbaatar"
    assert [c["scope"] for c in held["consents"]] == ["all"]
    assert [(x["action_id"], x["status"]) for x in held["letters"]] == [("act", "sent")]
    assert [a["outcome"] for a in held["attempts"]] == ["sent"]
    before = [(c.target_id, c.letters) for c in store.sent_counts()]
    assert store.people.forget(PERSON.email, NOW)
    assert store.people.export(PERSON.email) is None
    assert [(c.target_id, c.letters) for c in store.sent_counts()] == before  # still 2 letters
    assert store.find_signer(PERSON.email) is None


def test_forget_leaves_no_bytes_of_the_person_in_the_database_files(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    (tmp_path / "s.csv").write_text(
        "email,name,language,city,country,scope,channels,consent_version,opted_in_at\n"
        f"{PERSON.email},{PERSON.name},en,{PERSON.city},MN,all,email;fax,v1,2025-01-01T00:00:00+00:00\n"
        "other@example.net,Other Person,en,,,all,email;fax,v1,2025-01-01T00:00:00+00:00\n"
    )
    runner = CliRunner()
    assert runner.invoke(main, ["supporters", "import", str(tmp_path / "s.csv")], env=env).exit_code == 0
    assert runner.invoke(main, ["run", "--once"], env=env).exit_code == 0
    # Their own words for an action, and a form still waiting for its confirmation link.
    store = open_store(env["DISPATCHER_DATABASE_URL"], migrate=False)
    try:
        later = replace(PERSON, opted_in_at=NOW, words={"act": WORDS}, terms=Terms(monthly_cap=5))
        store.import_supporters([later], NOW)
        assert store.people.open_opt_in(PERSON.email, json.dumps({"words": WORDS}), NOW) is not None
    finally:
        store.close()
    exported = runner.invoke(main, ["supporters", "export", PERSON.email], env=env)
    held = json.loads(exported.output)
    assert held["letters"] and held["personal_words"][0]["words"] == WORDS
    files = [tmp_path / "d.db", tmp_path / "d.db-wal"]
    for held_bytes in (PERSON.name, WORDS):
        assert any(held_bytes.encode() in f.read_bytes() for f in files if f.exists())
    summary = runner.invoke(main, ["log", "--summary"], env=env).output
    gone = runner.invoke(main, ["supporters", "forget", PERSON.email], env=env)
    assert gone.exit_code == 0, gone.output
    for secret in (PERSON.name, PERSON.email, PERSON.city, WORDS):
        for f in files:
            if f.exists():
                assert secret.encode() not in f.read_bytes(), f"{secret!r} still in {f.name}"
    assert runner.invoke(main, ["log", "--summary"], env=env).output == summary
    assert runner.invoke(main, ["supporters", "export", PERSON.email], env=env).exit_code != 0


def test_a_person_at_an_internationalised_domain_is_found_as_they_write_it(store: Store) -> None:
    # The importer keeps the domain's ASCII form (xn--…); staff type it as the person does.
    [record] = people(1)
    store.import_supporters([replace(record, email=fields.email("Zoe.Ng@Bücher.example"))], NOW)
    for written in ("zoe.ng@bücher.example", "Zoe.Ng@BÜCHER.example", "zoe.ng@xn--bcher-kva.example"):
        held = store.people.export(written)
        assert held is not None and held["email"] == "zoe.ng@xn--bcher-kva.example", written
        assert store.find_signer(written) is not None, written
    assert store.people.revoke("Zoe.Ng@Bücher.example", NOW, "cli") is not None
    assert store.people.forget(" zoe.ng@bücher.example ", NOW)
    assert store.people.export("zoe.ng@xn--bcher-kva.example") is None
