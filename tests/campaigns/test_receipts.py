"""Receipts: each supporter who asked gets a digest of the letters sent in their name, in their
language, with the revoke link and RFC 8058 headers; once per period, by one runner only."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import Counter
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from dispatcher.actions.files import load_actions
from dispatcher.models import AttemptResult, ClaimGroup, Outcome, SupporterRecord
from dispatcher.pacing import Limits
from dispatcher.people import tokens
from dispatcher.people.receipts import (
    Digest,
    ReceiptsJob,
    compose,
    period_end,
    send_receipts,
    texts_for,
)
from dispatcher.settings import Settings
from dispatcher.store import ClaimRequest, Store, open_store
from dispatcher.store.privacy import Recipient, SentLetter
from dispatcher.store.schema import consents, supporters
from tests.conftest import never_retry
from tests.support.actions import action_data, write_action
from tests.support.smtp_server import Received, SmtpServer

NOW = dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC)  # a Tuesday: last week and October are due
OCTOBER = dt.datetime(2026, 10, 20, 14, 0, tzinfo=dt.UTC)
LAST_WEEK = dt.datetime(2026, 11, 18, 8, 0, tzinfo=dt.UTC)  # Wednesday of the week before NOW
THIS_WEEK = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)  # after that week ended
PUBLIC = "https://letters.example.org"
UNPACED = Limits(rate=1e6, burst=1e6, global_rate=1e6)

TARGETS = {
    "free-ilham": {
        "minister": "Minister Wang",
        "embassy": "Embassy of Examplestan",
        "ambassador": "Ambassador Li",
    },
    "close-camps": {"governor": "Governor Chen", "consulate": "Consulate General"},
}
TITLES = {"free-ilham": "Free Ilham Tohti", "close-camps": "Close the camps"}

ANNA = SupporterRecord(
    "anna@example.net", "Anna Schmidt", "de", "Berlin", "DE", ("all",), OCTOBER - dt.timedelta(days=30),
    receipts="weekly",
)  # fmt: skip
LI = SupporterRecord(
    "li@example.net", "李华", "zh-Hans", "Taipei", "TW", ("all",), OCTOBER - dt.timedelta(days=30),
    receipts="monthly",
)  # fmt: skip
QUIET = SupporterRecord("quiet@example.net", "Quiet Person", "en", "", "", ("all",), OCTOBER, receipts="off")
GONE = SupporterRecord("gone@example.net", "Gone Person", "fr", "", "", ("all",), OCTOBER, receipts="weekly")


def write_actions(folder: Path) -> Path:
    """The two actions' files (their titles and targets' names are what the digests show)."""
    actions = folder / "actions"
    for action_id, targets in TARGETS.items():
        entries = [
            {"id": t, "name": name, "email": f"{t}@example.org", "channels": ["email"]}
            for t, name in targets.items()
        ]
        write_action(actions, action_data(action_id, entries, title=TITLES[action_id]))
    return actions


def config(tmp_path: Path, smtp_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'unused.db'}",
        "actions_dir": write_actions(tmp_path),
        "smtp_url": smtp_url,
        "smtp_timeout": 5.0,
        "public_url": PUBLIC,
    }
    return Settings.model_validate(values | overrides)


def send_group(store: Store, action_id: str, target_id: str, outcome: Outcome, at: dt.datetime) -> int:
    """Claim every pending letter of one action × target and record ``outcome`` for each."""
    group = ClaimGroup(action_id, target_id, "email", (f"email:{target_id}@example.org",))
    request = ClaimRequest([group], {"email": 1000}, UNPACED)
    claims = store.claim("w", request, at, dt.timedelta(minutes=1)).claims
    results = [
        AttemptResult(
            c.delivery_id, action_id, target_id, "email", at, at, outcome, code=250, detail="250 ok"
        )
        for c in claims
    ]
    store.record("w", results, never_retry)
    return len(claims)


def campaign(store: Store, people: list[SupporterRecord]) -> None:
    """Letters sent in October and last week, one failed, one still pending, one sent this week."""
    store.import_supporters(people, OCTOBER - dt.timedelta(days=1))
    for action_id, targets in TARGETS.items():
        store.plan(action_id, [(t, "email") for t in targets], OCTOBER - dt.timedelta(days=1))
    send_group(store, "free-ilham", "minister", Outcome.SENT, OCTOBER)
    send_group(store, "free-ilham", "embassy", Outcome.FAILED, LAST_WEEK)
    send_group(store, "close-camps", "governor", Outcome.SENT, LAST_WEEK)
    send_group(store, "close-camps", "consulate", Outcome.SENT, THIS_WEEK)
    # free-ilham × ambassador stays pending


def run(settings: Settings, store: Store, now: dt.datetime = NOW, worker: str = "w") -> int:
    actions = load_actions(settings.actions_dir).actions
    return asyncio.run(send_receipts(settings, store, actions, now, worker))


def by_recipient(received: list[Received]) -> dict[str, Received]:
    out = {r.rcpt_tos[0]: r for r in received}
    assert len(out) == len(received), "a supporter got two digests"
    return out


def token_of(link: str) -> str:
    return link.rpartition("/")[2].partition("?")[0]


def text_of(message: EmailMessage) -> str:
    return str(message.get_content()).replace("\r\n", "\n")


def through(store: Store, email: str) -> dt.datetime | None:
    with store.engine.begin() as conn:  # type: ignore[attr-defined]
        value: dt.datetime | None = conn.scalar(
            select(supporters.c.receipts_through).where(supporters.c.email == email)
        )
        return value


def test_periods_end_on_monday_and_the_first_of_the_month_after_six_hours() -> None:
    monday = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
    assert period_end("weekly", NOW) == monday
    assert period_end("weekly", monday + dt.timedelta(hours=5)) == monday - dt.timedelta(days=7)
    assert period_end("monthly", NOW) == dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    assert period_end("monthly", dt.datetime(2026, 12, 1, 5, tzinfo=dt.UTC)).month == 11
    assert texts_for("de-CH")[0] == "de" and texts_for("zh-CN")[0] == "zh-Hans"
    assert texts_for("zh-TW")[0] == "en" and texts_for("pt-BR")[0] == "en" and texts_for("")[0] == "en"


def test_the_letters_not_listed_are_counted_in_the_plural_form_of_their_number() -> None:
    person = Recipient(1, "amelie@example.net", "Amélie", "fr-CA", "weekly", None)
    letter = SentLetter("no-such-action", "nobody", "email", OCTOBER)
    for total, more in ((2, "… et 1 autre."), (3, "… et 2 autres.")):
        body = compose(Digest(person, [letter], total, NOW), {}, "https://x.example/r").body
        assert more in body.splitlines(), body


def test_digests_in_german_and_chinese_list_exactly_the_letters_sent(tmp_path: Path, store: Store) -> None:
    campaign(store, [ANNA, LI, QUIET, GONE])
    store.people.revoke(GONE.email, OCTOBER, "cli")
    with SmtpServer() as smtp:
        settings = config(tmp_path, smtp.url)
        assert run(settings, store) == 2
        got = by_recipient(smtp.received())
    assert set(got) == {ANNA.email, LI.email}  # not receipts off, not after revoking
    secret = store.instance_secret()

    anna = got[ANNA.email].message()
    assert anna["Subject"] == "In Ihrem Namen versandte Briefe" and anna["Content-Language"] == "de"
    body = text_of(anna)
    assert body.startswith("Hallo Anna Schmidt,\n\nbis zum 22. November 2026 wurden diese Briefe")
    lines = [line for line in body.splitlines() if line.startswith("- ")]
    assert lines == [
        "- 20.10.2026: Free Ilham Tohti, an Minister Wang, per E-Mail",
        "- 18.11.2026: Close the camps, an Governor Chen, per E-Mail",
    ]  # not the failed letter, not the pending one, not this week's
    link = anna["List-Unsubscribe"].strip("<>")
    assert link.startswith(f"{PUBLIC}/revoke/") and link.endswith("?lang=de") and link in body
    assert tokens.read(secret, tokens.REVOKE, token_of(link)) == ANNA.email
    assert anna["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    li = got[LI.email].message()
    assert li["Subject"] == "以您的名义发出的信件" and li["Content-Language"] == "zh-Hans"
    body = text_of(li)
    assert body.startswith("李华，您好：\n\n截至2026年10月31日，以下信件已以您的名义发出：")
    assert [line for line in body.splitlines() if line.startswith("- ")] == [
        "- 2026年10月20日：Free Ilham Tohti，致Minister Wang，通过电子邮件"
    ]  # November's letters wait for November's digest
    assert li["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = li["List-Unsubscribe"].strip("<>")
    assert link.endswith("?lang=zh-Hans") and link in body
    assert tokens.read(secret, tokens.REVOKE, token_of(link)) == LI.email
    assert through(store, ANNA.email) == period_end("weekly", NOW)
    assert through(store, LI.email) == period_end("monthly", NOW)


def test_not_sent_twice_and_nothing_sent_when_nothing_is_new(tmp_path: Path, store: Store) -> None:
    campaign(store, [ANNA, LI])
    with SmtpServer() as smtp:
        settings = config(tmp_path, smtp.url)
        assert run(settings, store) == 2
        assert run(settings, store) == 0  # the same periods again: done
        assert run(settings, store, NOW + dt.timedelta(days=1)) == 0
        # A week on (and a month on, for Li), the letters since are reported, from where the
        # last digests ended.
        next_week = NOW + dt.timedelta(days=7)
        assert run(settings, store, next_week) == 2
        later = by_recipient(smtp.received()[2:])
        # A week later still, nothing new was sent: no email, but the period is done.
        assert run(settings, store, next_week + dt.timedelta(days=7)) == 0
        assert len(smtp.received()) == 4
    body = text_of(later[ANNA.email].message())
    assert "vom 23. November 2026 bis zum 29. November 2026" in body
    assert [line for line in body.splitlines() if line.startswith("- ")] == [
        "- 23.11.2026: Close the camps, an Consulate General, per E-Mail"
    ]
    body = text_of(later[LI.email].message())
    assert "2026年11月1日至2026年11月30日" in body
    assert [line for line in body.splitlines() if line.startswith("- ")] == [
        "- 2026年11月18日：Close the camps，致Governor Chen，通过电子邮件",
        "- 2026年11月23日：Close the camps，致Consulate General，通过电子邮件",
    ]
    assert through(store, ANNA.email) == period_end("weekly", next_week + dt.timedelta(days=7))


async def test_two_runners_at_once_send_each_digest_once(tmp_path: Path, db_url: str) -> None:
    people = [
        SupporterRecord(
            f"p{i}@example.net", f"Person {i}", "en", "", "", ("all",), OCTOBER, receipts="weekly"
        )
        for i in range(12)
    ]
    first, second = open_store(db_url), open_store(db_url, migrate=False)
    try:
        await asyncio.to_thread(campaign, first, people)
        with SmtpServer() as smtp:
            settings = config(tmp_path, smtp.url)
            actions = load_actions(settings.actions_dir).actions
            runs = [send_receipts(settings, s, actions, NOW, f"w{i}") for i, s in enumerate([first, second])]
            sent = await asyncio.gather(*runs)
            received = smtp.received()
    finally:
        first.close()
        second.close()
    assert sum(sent) == 12
    assert Counter(r.rcpt_tos[0] for r in received) == {p.email: 1 for p in people}


def test_a_digest_already_sent_cannot_be_claimed_from_a_stale_read(store: Store) -> None:
    campaign(store, [ANNA])
    ends = {"weekly": period_end("weekly", NOW), "monthly": period_end("monthly", NOW)}
    seen = store.privacy.receipts_due(ends, NOW, 10)
    assert [p.email for p in seen] == [ANNA.email]
    token = store.privacy.claim_receipt(seen[0], "a", NOW, dt.timedelta(minutes=10))
    assert token is not None
    assert store.privacy.claim_receipt(seen[0], "b", NOW, dt.timedelta(minutes=10)) is None  # held
    assert store.privacy.finish_receipt(seen[0], token, ends["weekly"])
    # Runner b read the list before a finished: its claim now finds the watermark moved.
    assert store.privacy.claim_receipt(seen[0], "b", NOW, dt.timedelta(minutes=10)) is None
    assert store.privacy.receipts_due(ends, NOW, 10) == []


def test_a_refused_digest_waits_an_hour_and_is_not_marked_sent(
    tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    campaign(store, [ANNA, LI])
    with SmtpServer() as smtp:
        smtp.fail(at="rcpt", reply="550", rcpt=ANNA.email)
        settings = config(tmp_path, smtp.url)
        assert run(settings, store) == 1
        assert through(store, ANNA.email) is None
        assert run(settings, store, NOW + dt.timedelta(minutes=10)) == 0  # not every run
        smtp.clear_rules()
        assert run(settings, store, NOW + dt.timedelta(minutes=61)) == 1
        assert sorted(r.rcpt_tos[0] for r in smtp.received()) == [ANNA.email, LI.email]
    assert "receipt to supporter" in caplog.text and ANNA.email not in caplog.text  # the reply quoted it


def test_no_public_url_no_receipts_said_once(
    tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    campaign(store, [ANNA])
    with SmtpServer() as smtp:
        settings = config(tmp_path, smtp.url, public_url=None)
        job = ReceiptsJob(settings, store, asyncio_call, "w", lambda: NOW, dict)
        with caplog.at_level(logging.WARNING, logger="dispatcher"):
            assert asyncio.run(job.run()) == 0
            assert asyncio.run(job.run()) == 0
        assert smtp.received() == []
    assert sum("DISPATCHER_PUBLIC_URL" in r.getMessage() for r in caplog.records) == 1
    assert through(store, ANNA.email) is None


def test_forgotten_supporters_get_nothing(tmp_path: Path, store: Store) -> None:
    campaign(store, [ANNA])
    # Even with a consent alive again (a bug elsewhere, or a hand edit), the stub has no address.
    assert store.people.forget(ANNA.email, NOW)
    with store.engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(update(supporters).values(receipts="weekly"))
        stub = conn.scalar(select(supporters.c.id))
        given = {"scope": "all", "source": "import", "opted_in_at": OCTOBER, "confirmed_at": OCTOBER}
        conn.execute(insert(consents).values(supporter_id=stub, **given))
    with SmtpServer() as smtp:
        assert run(config(tmp_path, smtp.url), store) == 0
        assert smtp.received() == []


async def asyncio_call(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)
