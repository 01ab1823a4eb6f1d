"""The hand-built MIME message: correct for every parser, and no header injection, ever."""

from __future__ import annotations

import asyncio
import datetime as dt
import mailbox
import os
import re
import stat
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses
from pathlib import Path

import pytest

from dispatcher.actions.model import Action
from dispatcher.channels import Envelope
from dispatcher.channels.email import MaildirTransport, MessageBuilder, OutgoingMail, encode_body, message_id
from dispatcher.letters.render import Letter
from dispatcher.mime import clean
from dispatcher.models import Signer

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
ACTION = Action.model_validate(
    {
        "id": "a",
        "title": "T",
        "deadline": "2030-01-01",
        "status": "active",
        "languages": ["en"],
        "targets": [
            {"id": "to", "name": "Président Xi", "email": "to@example.org", "channels": ["email"]},
            {
                "id": "cc",
                "name": "Ambassador, Embassy",
                "role": "cc",
                "email": "cc@example.org",
                "channels": ["email"],
            },
        ],
    }
)


def build_mail(name: str, subject: str, body: str, replies: str) -> OutgoingMail:
    builder = MessageBuilder("Letters Org <letters@example.org>", b"k" * 16)
    signer = Signer(name, "sup@example.net", "", "", "en", replies=replies)
    envelope = Envelope(ACTION, ACTION.target("to"), Letter(subject, body, "en"), signer, 42, NOW)
    return builder.build(envelope, ACTION.copies("email"))


def build(
    name: str, subject: str = "Free them", body: str = "Dear President,\nPlease.\n", replies: str = "direct"
) -> EmailMessage:
    mail = build_mail(name, subject, body, replies)
    assert mail.recipients == ("to@example.org", "cc@example.org") and mail.sender == "letters@example.org"
    assert all(len(line) <= 998 for line in mail.data.split(b"\r\n"))
    parsed = message_from_bytes(mail.data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_headers_and_body_round_trip() -> None:
    msg = build("Zoë Müller", subject="请释放 — release them " * 4, body="第一行\n" + "ü" * 2000 + "\n")
    assert msg["From"].addresses[0].display_name == "Zoë Müller"
    assert msg["From"].addresses[0].addr_spec == "letters@example.org"
    assert msg["Reply-To"].addresses[0].addr_spec == "sup@example.net"
    assert str(msg["To"].addresses[0].display_name) == "Président Xi"
    assert msg["Cc"].addresses[0].display_name == "Ambassador, Embassy"
    assert msg["Subject"] == ("请释放 — release them " * 4).strip()
    assert msg["Message-ID"] == message_id(b"k" * 16, 42, "example.org")
    assert msg["Content-Language"] == "en"
    assert msg.get_content() == "第一行\n" + "ü" * 2000 + "\n"
    assert msg["Date"].datetime == NOW


def test_the_supporters_address_goes_out_only_when_they_chose_direct_replies() -> None:
    kept = build_mail("Zoë Müller", "Free them", "Dear President,\n", "organisation")
    assert b"sup@example.net" not in kept.data.lower() and b"sup@" not in kept.data.lower()
    msg = build("Zoë Müller", replies="organisation")
    assert msg["Reply-To"] is None and msg["From"].addresses[0].addr_spec == "letters@example.org"
    assert build("Zoë Müller", replies="direct")["Reply-To"].addresses[0].addr_spec == "sup@example.net"


@pytest.mark.parametrize(
    "name",
    [
        "Eve\r\nBcc: victim@example.com",
        "Eve\nBcc: victim@example.com",
        "Eve\rBcc: victim@example.com",
        "Eve\u2028Bcc: victim@example.com",
        "Évé\r\nBcc: victim@example.com",
        'Eve "the" \\ <evil@example.com>, other@example.com',
        "=?utf-8?q?Bcc:_x?= trick",
        "\x00\x1b[31m red",
    ],
)
def test_no_name_can_add_a_header_or_a_recipient(name: str) -> None:
    msg = build(name, subject=name)
    assert msg["Bcc"] is None
    assert sorted(msg.keys()) == sorted(
        [
            "Message-ID",
            "Date",
            "From",
            "Reply-To",
            "To",
            "Cc",
            "Subject",
            "MIME-Version",
            "Content-Type",
            "Content-Transfer-Encoding",
            "Content-Language",
        ]
    )
    assert len(msg["From"].addresses) == 1 and msg["From"].addresses[0].addr_spec == "letters@example.org"
    assert len(msg["Reply-To"].addresses) == 1
    assert msg["From"].addresses[0].display_name == clean(name)


def test_body_encodings() -> None:
    assert encode_body("plain\nascii\n")[0] == "7bit"
    assert encode_body("x" * 1200)[0] == "quoted-printable"
    assert encode_body("Grüße aus München\n")[0] == "quoted-printable"
    assert encode_body("释放所有被任意拘押的人\n")[0] == "base64"
    assert encode_body("a\r\nb\rc\n")[1] == b"a\r\nb\r\nc\r\n"


def test_message_ids_are_stable_and_distinct() -> None:
    assert message_id(b"s" * 16, 1, "d.org") == message_id(b"s" * 16, 1, "d.org")
    assert message_id(b"s" * 16, 1, "d.org") != message_id(b"s" * 16, 2, "d.org")
    assert message_id(b"s" * 16, 1, "d.org") != message_id(b"t" * 16, 1, "d.org")


def head_lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def build_with(name: str, subject: str, copies: list[str]) -> tuple[bytes, EmailMessage]:
    targets = [{"id": "to", "name": name, "email": "to@example.org", "channels": ["email"]}]
    targets += [
        {"id": f"cc{i}", "name": cc, "role": "cc", "email": f"cc{i}@example.org", "channels": ["email"]}
        for i, cc in enumerate(copies)
    ]
    action = Action.model_validate(
        {
            "id": "a",
            "title": "T",
            "deadline": "2030-01-01",
            "status": "active",
            "languages": ["en"],
            "targets": targets,
        }
    )
    builder = MessageBuilder(f"{name} <letters@example.org>", b"k" * 16)
    signer = Signer(name, "sup@example.net", "", "", "en", replies="direct")  # every header at length
    envelope = Envelope(action, action.target("to"), Letter(subject, "Body.\n", "en"), signer, 7, NOW)
    data = builder.build(envelope, action.copies("email")).data
    parsed = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(parsed, EmailMessage)
    return data, parsed


LONG_WORD = "x" * 2000
LONG_HEADERS = {
    "ascii word subject": ("Ann Lee", LONG_WORD, []),
    "ascii word name": ("B" * 1500, "Free them", []),
    "quoted name": ('Eve "the" ' + "y" * 1500, "Free them", []),
    "name with = and ?": ("=?" + "z" * 1500, "Free them", []),
    "long latin name": ("Ann Lee " * 150, "Free them", []),
    "latin subject": ("Zoë", "Libérez-les " * 200, []),
    "latin word subject": ("Zoë", "é" * 1500, []),
    "cjk": ("林小文" * 300, "请释放所有被任意拘押的人" * 100, []),
    "long cc list": ("Ann", "Free them", [f"Ambassador {i}, Embassy of Somewhere" for i in range(60)]),
    "long cc name": ("Ann", "Free them", ["C" * 1200, "Consul Général " * 80, "领事" * 300]),
}


def decoded(data: bytes, header: str) -> list[tuple[str, str]]:
    """The (display name, address) pairs of a header, unfolded and decoded as RFC 2047 says.

    Whitespace between two encoded words is not part of the text; Python 3.11's structured
    parser keeps it in display names (not in Subject), so names are checked with this.
    """
    raw = BytesParser(policy=policy.compat32).parsebytes(data)[header]
    unfolded = re.sub(r"\r\n(?=[ \t])", "", str(raw))
    return [(str(make_header(decode_header(name))), address) for name, address in getaddresses([unfolded])]


@pytest.mark.parametrize(("name", "subject", "copies"), LONG_HEADERS.values(), ids=LONG_HEADERS.keys())
def test_no_header_line_is_longer_than_998_octets(name: str, subject: str, copies: list[str]) -> None:
    data, msg = build_with(name, subject, copies)
    lines = head_lines(data)
    assert max(len(line) for line in lines) <= 998
    assert all(line.isascii() for line in lines)
    assert msg["Subject"] == clean(subject)
    assert decoded(data, "From") == [(clean(name), "letters@example.org")]
    assert decoded(data, "Reply-To") == [(clean(name), "sup@example.net")]
    assert decoded(data, "To") == [(clean(name), "to@example.org")]
    cc = [(clean(c), f"cc{i}@example.org") for i, c in enumerate(copies)]
    assert (decoded(data, "Cc") if copies else []) == cc
    # the strict parser reads the same addresses, without defects
    assert [a.addr_spec for a in msg["Cc"].addresses] == [a for _, a in cc] if copies else msg["Cc"] is None
    for header in ("From", "Reply-To", "To", "Subject", *(["Cc"] if copies else [])):
        assert not msg[header].defects, header


@pytest.mark.parametrize(
    ("name", "subject"),
    [
        ("Ann Lee " * 30, "Please release them now " * 20),
        ("Zoë Müller " * 30, "Libérez-les " * 40),
        ('Eve "the" Quoted ' * 20, "请释放所有被任意拘押的人" * 20),
    ],
)
def test_header_lines_stay_within_78_characters_when_words_allow(name: str, subject: str) -> None:
    copies = [f"Ambassador {i}, Embassy of Somewhere" for i in range(10)]
    data, msg = build_with(name, subject, copies)
    assert max(len(line) for line in head_lines(data)) <= 78
    assert msg["Subject"] == clean(subject) and decoded(data, "From") == [
        (clean(name), "letters@example.org")
    ]


def test_maildir_outbox_is_private_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        outbox = tmp_path / "var" / "outbox"
        transport = MaildirTransport(outbox)
        mail = OutgoingMail("letters@example.org", ("to@example.org",), b"Subject: x\r\n\r\nBody\r\n")
        reply = asyncio.run(transport.send(mail))
        assert reply.code == 250
    finally:
        os.umask(previous)
    for folder in (outbox, outbox / "tmp", outbox / "new", outbox / "cur"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    [message] = (outbox / "new").iterdir()
    assert stat.S_IMODE(message.stat().st_mode) == 0o600
    assert str(message) in reply.detail
    assert [m.as_bytes() for m in mailbox.Maildir(str(outbox), create=False)] == [
        mailbox.MaildirMessage(mail.data).as_bytes()
    ]
    assert list((outbox / "tmp").iterdir()) == []


def test_an_existing_outbox_is_made_private(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    for folder in (outbox, outbox / "tmp", outbox / "new", outbox / "cur"):
        folder.mkdir(mode=0o755)
        folder.chmod(0o755)
    MaildirTransport(outbox)
    for folder in (outbox, outbox / "tmp", outbox / "new", outbox / "cur"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_text_direction_controls_never_reach_a_header() -> None:
    # The importer refuses them; a name stored before it did must not reverse the From either.
    data, msg = build_with("Ann \u202eeeL\u2066 \u200f", "Free \u202ethem", [])
    assert decoded(data, "From") == [("Ann eeL", "letters@example.org")]
    assert msg["Subject"] == "Free them"
