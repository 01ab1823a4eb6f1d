"""``dispatcher proof`` through the real command and a real SMTP server on loopback: random
actions (targets, roles, channels, fallbacks, languages, statuses) each proofed in full, marked,
to the staff address only, with no supporter's data; refusals say why and send nothing."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from dispatcher.actions.files import load_actions
from dispatcher.channels.base import Envelope
from dispatcher.channels.email import EmailChannel, MessageBuilder
from dispatcher.channels.email.message import encode_body
from dispatcher.letters.render import Renderer
from dispatcher.sending.proof import HEADER, PREFIX, PROOF_SIGNER, counted
from dispatcher.store import Store, open_store
from tests.campaigns.test_cli import cli
from tests.conftest import ROOT, cli_env
from tests.store.test_store_contract import people as supporters
from tests.support.actions import action_data, write_action
from tests.support.smtp_server import Received, SmtpServer
from tests.unit.test_faxpdf import MISSING, text_of

STAFF = "proofs@staff.example"
LANGUAGES = ("en", "de", "zh-Hans")
TEMPLATE = (
    "{% block subject %}Free them, {{ target.name }} ({{ language }}){% endblock %}"
    "{% block body %}{{ target.salutation }},\n\nRelease them.\n"
    "{% if supporter.words %}{{ supporter.words }}\n{% endif %}\n{{ supporter.name }}, {{ supporter.city }}\n"
    "{% endblock %}"
)
# Real supporters in the store: none of this may reach a proof.
SECRETS = ("Secret Supporter", "p0@example.net", "p2@example.net", "Hiddenville", "words only I wrote")


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def random_action(rng: random.Random) -> dict[str, Any]:
    targets = []
    for i in range(rng.randint(1, 4)):
        channels = rng.choice([["email"], ["fax"], ["email", "fax"], []])
        target: dict[str, Any] = {
            "id": f"t{i}",
            "name": f"Official {i}",
            "role": "to" if i == 0 else rng.choice(["to", "cc"]),
            "country": "CH",
            "languages": rng.sample(LANGUAGES, rng.randint(0, 3)),
            "salutation": {language: f"Dear Official {i}" for language in LANGUAGES},
            "email": f"official{i}@gov.example",
            "fax": f"+41 44 668 18 {10 + i}",
            "channels": channels,
        }
        if channels == ["fax"] and rng.random() < 0.5:
            target["fallback"] = "email"
        targets.append(target)
    status = rng.choice(["draft", "active", "paused"])
    return action_data("proofed", targets, status=status, languages=rng.sample(LANGUAGES, rng.randint(1, 3)))


def expected(data: dict[str, Any], templates: dict[str, list[str]]) -> set[tuple[str, str, str, str]]:
    """(target, channel, language, variant) of every letter the action sends: an email to a ``to``
    target (a ``cc`` is copied on those), a fax to any target, an email where a fax falls back; in
    the target's first language with a template, else the action's; in each of its variants."""
    letters = set()
    for t in data["targets"]:
        language = next(x for x in (*t["languages"], *data["languages"]) if x in templates)
        channels = [c for c in t["channels"] if c == "fax" or t["role"] == "to"]
        channels += ["email"] if t.get("fallback") else []
        letters |= {(t["id"], c, language, v) for c in channels for v in templates[language]}
    return letters


def world(tmp_path: Path, rng: random.Random) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """A random action, and its templates: each language's variants (``a``, maybe ``b`` and ``c``)."""
    data = random_action(rng)
    languages = {data["languages"][0], *rng.sample(LANGUAGES, rng.randint(0, 3))}
    templates = {language: ["a", "b", "c"][: rng.randint(1, 3)] for language in languages}
    folder = tmp_path / "templates" / "proofed"
    folder.mkdir(parents=True)
    for language, variants in templates.items():
        for variant in variants:
            name = f"{language}.j2" if variant == "a" else f"{language}.{variant}.j2"
            (folder / name).write_text(
                TEMPLATE.replace("Release them.", f"Variant {variant}."), encoding="utf-8"
            )
    write_action(tmp_path / "actions", data)
    return data, templates


def add_secret_supporters(store: Store) -> None:
    people = [
        dataclasses.replace(
            p,
            name=f"Secret Supporter {i}",
            city="Hiddenville",
            words={"proofed": "These are words only I wrote."},
        )
        for i, p in enumerate(supporters(3, ("proofed",)))
    ]
    store.import_supporters(people, dt.datetime.now(dt.UTC))


def label(message: EmailMessage) -> dict[str, str]:
    return dict(part.strip().split("=", 1) for part in str(message[HEADER]).split(";"))


def readable(message: EmailMessage, tmp_path: Path) -> str:
    """Everything a person reading the proof sees: headers, text, the PDF's text."""
    text = "\n".join(f"{k}: {v}" for k, v in message.items())
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            text += "\n" + str(part.get_content())
        elif part.get_content_type() == "application/pdf":
            pdf = part.get_payload(decode=True)
            assert isinstance(pdf, bytes) and pdf.startswith(b"%PDF-")
            text += "\n" + ("" if MISSING else " ".join(text_of(pdf, tmp_path).split()))
    return text


def check_marked_and_staff_only(got: Received, data: dict[str, Any]) -> EmailMessage:
    officials = {t["email"] for t in data["targets"]}
    message = got.message()
    assert got.rcpt_tos == (STAFF,)
    assert [a.addr_spec for a in message["To"].addresses] == [STAFF] and message["Cc"] is None
    assert not officials & set(got.rcpt_tos)
    assert str(message["Subject"]).startswith(f"{PREFIX} ")
    assert label(message)["action"] == "proofed"
    return message


@pytest.mark.parametrize("seed", range(8))
def test_a_proof_is_every_letter_marked_to_staff_only_without_supporters(
    tmp_path: Path, db_url: str, store: Store, smtp: SmtpServer, seed: int
) -> None:
    rng = random.Random(seed)
    data, templates = world(tmp_path, rng)
    add_secret_supporters(store)
    env = cli_env(tmp_path, tmp_path, DISPATCHER_DATABASE_URL=db_url, DISPATCHER_SMTP_URL=smtp.url)
    letters = expected(data, templates)
    out = cli(env, "proof", "proofed", "--to", STAFF, ok=bool(letters)).output
    if not letters:
        assert "proofed sends no letter" in out and smtp.transactions == 0
        return
    assert f"proof of {counted(len(letters))} sent to {STAFF}" in out
    received = smtp.wait_for(len(letters))
    got = set()
    for mail in received:
        message = check_marked_and_staff_only(mail, data)
        tag = label(message)
        got.add((tag["target"], tag["channel"], tag["language"], tag["variant"]))
        attachments = [p for p in message.walk() if p.get_content_type() == "application/pdf"]
        assert len(attachments) == (tag["channel"] == "fax")
        seen = readable(message, tmp_path)
        assert not [s for s in SECRETS if s in seen or s.encode() in mail.data], seen
        if tag["channel"] == "email" or not MISSING:
            assert " ".join(PROOF_SIGNER.words.split()) in seen and f"Variant {tag['variant']}." in seen
    assert got == letters and len(received) == len(letters)
    # Nothing recorded as a delivery; the audit log says who sent a proof of what, to whom.
    assert store.action_counts() == {}
    entry = store.accounts.audit_entries(None, 1)[0][1]
    assert (entry.action, entry.subject, entry.address) == ("proof", "proofed", "cli")
    assert entry.detail == f"{counted(len(letters))} to {STAFF}"


def test_an_email_proof_is_the_targets_letter_only_readdressed(tmp_path: Path, smtp: SmtpServer) -> None:
    """The demo's cc'd ambassador and CJK letters: the bytes the channel would build for the
    target, with only the routing moved aside, the subject marked and the proof's header added."""
    env = cli_env(tmp_path, DISPATCHER_SMTP_URL=smtp.url)
    cli(env, "proof", "demo-xinjiang", "--to", STAFF)
    [got] = smtp.wait_for(1)
    action = load_actions(ROOT / "config" / "actions").actions["demo-xinjiang"]
    target = action.target("president-demo")
    letter = Renderer(ROOT / "templates").render(
        action, target, "zh-Hans", PROOF_SIGNER, dt.datetime.now(dt.UTC).date()
    )
    real = MessageBuilder("Letters (demo) <letters@example.org>", b"k" * 32).build(
        Envelope(action, target, letter, PROOF_SIGNER, 1, dt.datetime.now(dt.UTC)),
        EmailChannel.copies(action, target),
    )
    real_message, proof = Received(1, "", (), real.data, None, None, 0).message(), got.message()
    assert str(proof["X-Proof-To"]) == str(real_message["To"]) and "president@example.org" in str(
        proof["X-Proof-To"]
    )
    assert str(proof["X-Proof-Cc"]) == str(real_message["Cc"]) and "ambassador" in str(proof["X-Proof-Cc"])
    assert str(proof["Subject"]) == f"{PREFIX} {real_message['Subject']}"
    same = ("From", "MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Content-Language")
    assert [str(proof[h]) for h in same] == [str(real_message[h]) for h in same]
    assert got.data.partition(b"\r\n\r\n")[2] == encode_body(letter.body)[1]
    assert proof["Message-ID"] != real_message["Message-ID"] and proof["Reply-To"] is None


def test_the_proof_of_a_fax_carries_its_pdf(tmp_path: Path, smtp: SmtpServer) -> None:
    """ua-61-21: two targets by email and fax, its Chinese letter in two variants."""
    env = cli_env(tmp_path, DISPATCHER_SMTP_URL=smtp.url)
    cli(env, "proof", "ua-61-21", "--to", STAFF)
    faxes = [m.message() for m in smtp.wait_for(8) if label(m.message())["channel"] == "fax"]
    tags = sorted((label(m)["target"], label(m)["variant"]) for m in faxes)
    assert tags == [("cui-tiankai", "a"), ("cui-tiankai", "b"), ("xi-jinping", "a"), ("xi-jinping", "b")]
    for message in faxes:
        [pdf] = [p for p in message.walk() if p.get_content_type() == "application/pdf"]
        tag = label(message)
        assert pdf.get_filename() == f"proof-ua-61-21-{tag['target']}-zh-Hans-{tag['variant']}.pdf"
        assert "+86 10 6238 1025" in str(message["X-Proof-Fax-To"]) or "+1 202" in str(
            message["X-Proof-Fax-To"]
        )
        if not MISSING:
            assert "Sample-Signer" in readable(message, tmp_path)


@pytest.mark.parametrize("to", ["president@example.org", "President@EXAMPLE.org", "ambassador@example.org"])
def test_a_targets_address_is_refused_and_nothing_sent(tmp_path: Path, smtp: SmtpServer, to: str) -> None:
    env = cli_env(tmp_path, DISPATCHER_SMTP_URL=smtp.url)
    out = cli(env, "proof", "demo-xinjiang", "--to", to, ok=False).output
    assert "is the address of target" in out and "a proof goes to staff" in out
    assert smtp.transactions == 0


def test_an_unknown_action_or_a_bad_address_is_a_clear_error(tmp_path: Path, smtp: SmtpServer) -> None:
    env = cli_env(tmp_path, DISPATCHER_SMTP_URL=smtp.url)
    unknown = cli(env, "proof", "no-such-action", "--to", STAFF, ok=False).output
    assert "no action 'no-such-action'" in unknown and "demo-xinjiang" in unknown
    assert "not a valid email address" in cli(env, "proof", "demo-xinjiang", "--to", "staff", ok=False).output
    assert smtp.transactions == 0


def test_nothing_is_sent_when_a_letter_does_not_render(tmp_path: Path, smtp: SmtpServer) -> None:
    """A proof that left a broken letter out would look complete: all or none."""
    fine = {"id": "fine", "name": "Fine", "salutation": {"en": "Dear Fine"}, "email": "f@gov.example"}
    broken = {"id": "broken", "name": "Broken", "email": "b@gov.example"}  # no salutation for en
    targets = [{**t, "channels": ["email"]} for t in (fine, broken)]
    write_action(tmp_path / "actions", action_data("proofed", targets, status="draft"))
    (tmp_path / "templates" / "proofed").mkdir(parents=True)
    (tmp_path / "templates" / "proofed" / "en.j2").write_text(TEMPLATE, encoding="utf-8")
    typo = TEMPLATE.replace("supporter.city", "supporter.cty")  # a second variant with a typo
    (tmp_path / "templates" / "proofed" / "en.b.j2").write_text(typo, encoding="utf-8")
    out = cli(
        cli_env(tmp_path, tmp_path, DISPATCHER_SMTP_URL=smtp.url), "proof", "proofed", "--to", STAFF, ok=False
    )
    assert "no proof sent" in out.output and "broken" in out.output and "no salutation for en" in out.output
    assert "unknown variable supporter.cty" in out.output and "(variant b)" in out.output
    assert smtp.transactions == 0


def test_a_mail_server_refusing_halfway_is_said_and_audited_as_it_went(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    smtp.fail(at="data", reply="550", messages={2})
    env = cli_env(tmp_path, DISPATCHER_SMTP_URL=smtp.url)
    out = cli(env, "proof", "ua-61-21", "--to", STAFF, ok=False).output
    assert "the mail server refused the proof after 1 of 8 letters" in out
    store = open_store(env["DISPATCHER_DATABASE_URL"])
    try:
        [(_, entry)] = store.accounts.audit_entries(None, 10)
        assert entry.detail == f"1 letter to {STAFF} (of 8: the mail server refused the rest)"
    finally:
        store.close()
