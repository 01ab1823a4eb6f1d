"""The hand-built MIME message: correct for every parser, and no header injection, ever."""

from __future__ import annotations

import datetime as dt
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from dispatcher.channels import Envelope
from dispatcher.channels.email import MessageBuilder, clean, encode_body, message_id
from dispatcher.config import Action
from dispatcher.render import Letter
from dispatcher.store import Signer

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


def build(name: str, subject: str = "Free them", body: str = "Dear President,\nPlease.\n") -> EmailMessage:
    builder = MessageBuilder("Letters Org <letters@example.org>", b"k" * 16)
    signer = Signer(name, "sup@example.net", "", "", "en")
    envelope = Envelope(ACTION, ACTION.target("to"), Letter(subject, body, "en"), signer, 42, NOW)
    mail = builder.build(envelope, ACTION.copies("email"))
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
