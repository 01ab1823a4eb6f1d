"""The public opt-in page end to end over HTTP, against the real web app and a real store (SQLite
and PostgreSQL): the form in five languages, the confirmation email caught by aiosmtpd on
loopback, its links followed; forged, misused, expired and replayed tokens refused; no
enumeration; the abuse limits; CSRF; and the one-click revoke link cancelling pending letters."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from markupsafe import escape
from pydantic import SecretStr, ValidationError
from starlette.applications import Starlette

from dispatcher.people import fields, tokens
from dispatcher.people.csv_import import KnownScopes, import_file
from dispatcher.store import Store
from dispatcher.web import Context, app_for
from dispatcher.web.public.optin import LANGS, text_for, text_version
from tests.smtp_server import Received, SmtpServer
from tests.web_client import web_settings

ROOT = Path(__file__).resolve().parent.parent
ACTION = "demo-xinjiang"
PUBLIC = "https://letters.example.org"
# The last day of a month: three months later is clamped to the 30th of April.
NOW = dt.datetime(2031, 1, 31, 10, 0, tzinfo=dt.UTC)
FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')
LINK = re.compile(
    r"https://letters\.example\.org(/(join/confirm|revoke)/[A-Za-z0-9_.=\-]+)\?lang=([A-Za-z-]+)"
)
FORM: dict[str, Any] = {
    "name": "Ada Example",
    "city": "Lyon",
    "country": "FR",
    "language": "en",
    "scope": "all",
    "channels": ["email", "fax"],
    "display": "full",
    "cap": "",
    "expiry": "none",
    "receipts": "off",
    "agree": "yes",
}


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@dataclass
class Site:
    app: Starlette
    web: httpx.AsyncClient
    ctx: Context
    clock: Clock
    smtp: SmtpServer
    store: Store


def write_world(tmp_path: Path) -> Path:
    """The demo action with a campaign tag, another open one, a draft and a closed one."""
    data = yaml.safe_load((ROOT / "config" / "actions" / f"{ACTION}.yaml").read_text(encoding="utf-8"))
    variants: dict[str, dict[str, Any]] = {
        ACTION: {"tags": ["xinjiang"]},
        "another-one": {"tags": ["xinjiang", "detention"], "title": "Another action"},
        "draft-one": {"status": "draft", "title": "A draft"},
        "closed-one": {"status": "closed", "title": "A closed one"},
    }
    folder = tmp_path / "actions"
    folder.mkdir()
    for action_id, changes in variants.items():
        text = yaml.safe_dump({**data, "id": action_id, **changes}, allow_unicode=True)
        (folder / f"{action_id}.yaml").write_text(text, encoding="utf-8")
    return folder


def visitor(app: Starlette, host: str = "192.0.2.10") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(host, 50000))
    return httpx.AsyncClient(transport=transport, base_url="https://testserver")


@pytest.fixture
async def site(tmp_path: Path, store: Store) -> AsyncIterator[Site]:
    with SmtpServer() as smtp:
        settings = web_settings(
            tmp_path, actions_dir=write_world(tmp_path), smtp_url=smtp.url, public_url=PUBLIC
        )
        app = app_for(settings, store)
        ctx: Context = app.state.ctx
        clock = Clock(NOW)
        ctx.clock = clock
        async with visitor(app) as web:
            yield Site(app, web, ctx, clock, smtp, store)


async def form_token(web: httpx.AsyncClient, path: str = "/join") -> str:
    found = FORM_TOKEN.search((await web.get(path)).text)
    assert found, f"no form token on {path}"
    return found.group(1)


async def join(web: httpx.AsyncClient, email: str, path: str = "/join", **fields: Any) -> httpx.Response:
    token = await form_token(web, path)
    return await web.post(path, data={**FORM, "email": email, "form_token": token, **fields})


def text_of(mail: Received) -> str:
    body = mail.message().get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def links(mail: Received) -> dict[str, tuple[str, str]]:
    """The confirm and revoke links of a confirmation email: kind → (path, page language)."""
    return {kind: (path, lang) for path, kind, lang in LINK.findall(text_of(mail))}


async def press(web: httpx.AsyncClient, path: str, **extra: str) -> httpx.Response:
    """Open a button page and press its button, as a browser would."""
    return await web.post(path, data={"form_token": await form_token(web, path), **extra})


def mails_to(smtp: SmtpServer, email: str) -> int:
    return sum(email in r.rcpt_tos for r in smtp.received())


def statuses(store: Store) -> Counter[str]:
    return Counter({q.status: q.count for q in store.queue_counts()})


# Joining -------------------------------------------------------------------------------------------
async def test_a_chinese_supporter_joins_confirms_by_button_and_their_terms_are_kept(site: Site) -> None:
    zh = text_for("zh-Hans")
    page = await site.web.get(f"/join/{ACTION}?lang=zh-Hans")
    assert page.status_code == 200 and '<html lang="zh-Hans">' in page.text
    assert zh["legend_words"] in page.text and zh["consent_text"].format(org="Letters (demo)") in page.text
    words = '我们关心<b onclick="steal()">伊力哈木</b>的安危。{{ 7*7 }} {% if 1 %}请释放他{% endif %}\u202e'
    fields = {
        "name": "林小文",
        "city": "温哥华",
        "country": "CA",
        "language": "zh-Hans",
        "channels": ["email"],
    }
    terms = {"sign": ["zh-Hans"], "display": "name", "cap": "５", "expiry": "3", "receipts": "weekly"}
    terms["replies"] = "direct"
    path = f"/join/{ACTION}?lang=zh-Hans"
    sent = await join(site.web, "Lin.Xiaowen@Example.NET", path, **fields, **terms, words=words)
    assert sent.status_code == 200 and zh["sent_title"] in sent.text

    mail = site.smtp.wait_for(1)[0]
    message = mail.message()
    assert mail.rcpt_tos == ("lin.xiaowen@example.net",)
    assert message["Content-Language"] == "zh-Hans" and message["Subject"] == zh["mail_subject"]
    found = links(mail)
    assert found["join/confirm"][1] == found["revoke"][1] == "zh-Hans"
    assert message["List-Unsubscribe"] == f"<{PUBLIC}{found['revoke'][0]}?lang=zh-Hans>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # The link names the person only encrypted: a proxy's access log does not show the address.
    token = found["revoke"][0].rsplit("/", 1)[1]
    assert "xiaowen" not in token and b"xiaowen" not in base64.urlsafe_b64decode(token)
    assert "林小文，您好" in text_of(mail)

    confirm_path = found["join/confirm"][0] + "?lang=zh-Hans"
    shown = await site.web.get(confirm_path)  # what a mail scanner does: it must confirm nothing
    assert shown.status_code == 200 and zh["confirm_button"] in shown.text
    assert shown.headers["referrer-policy"] == "no-referrer" and shown.headers["cache-control"] == "no-store"
    assert site.store.people.export(mail.rcpt_tos[0]) is None
    site.clock.now = NOW + dt.timedelta(hours=1)
    done = await press(site.web, confirm_path)
    assert done.status_code == 200 and zh["confirmed_title"] in done.text

    held = site.store.people.export("lin.xiaowen@example.net")
    assert held is not None
    assert (held["name"], held["language"], held["city"], held["country"]) == (
        "林小文",
        "zh-Hans",
        "温哥华",
        "CA",
    )
    assert held["receipts"] == "weekly"
    [consent] = held["consents"]
    assert {k: consent[k] for k in ("scope", "channels", "languages", "name_display", "monthly_cap")} == {
        "scope": ACTION,
        "channels": "email",
        "languages": "zh-Hans",
        "name_display": "name",
        "monthly_cap": 5,
    }
    assert consent["replies"] == "direct"
    # The consent text as shown: its label, the page's language and a digest of its words.
    label, shown_in, digest = consent["text_version"].split(" ")
    assert (label, shown_in, len(digest)) == (site.ctx.settings.consent_text_version, "zh-Hans", 8)
    assert consent["text_version"] == text_version(site.ctx.settings, "zh-Hans")
    assert consent["source"] == "form"
    assert dt.datetime.fromisoformat(consent["opted_in_at"]) == NOW  # when the form was posted
    assert dt.datetime.fromisoformat(consent["confirmed_at"]) == NOW + dt.timedelta(hours=1)
    assert dt.datetime.fromisoformat(consent["expires_at"]) == dt.datetime(2031, 4, 30, 11, tzinfo=dt.UTC)
    [own] = held["personal_words"]
    assert own["action_id"] == ACTION and "伊力哈木" in own["words"] and "7*7" in own["words"]
    for markup in ("<", ">", "{{", "{%", "49", "onclick", "\u202e"):
        assert markup not in own["words"], markup


async def test_the_general_form_offers_campaign_tags_in_the_browsers_language(site: Site) -> None:
    fr = text_for("fr")
    site.web.headers["Accept-Language"] = "fr-CA,fr;q=0.9,en;q=0.5"
    page = await site.web.get("/join")
    assert '<html lang="fr">' in page.text and fr["title_general"] in page.text
    assert 'value="detention"' in page.text and 'value="xinjiang"' in page.text
    assert "A draft" not in page.text and "A closed one" not in page.text  # their tags would be offered
    unknown = await join(site.web, "amelie@example.net", scope="tags", tags=["xinjiang", "nope"])
    assert unknown.status_code == 400 and fr["err_scope"] in unknown.text
    sent = await join(
        site.web, "amelie@example.net", scope="tags", tags=["xinjiang", "detention"], language="fr"
    )
    assert sent.status_code == 200 and fr["sent_title"] in sent.text
    mail = site.smtp.wait_for(1)[0]
    assert mail.message()["Subject"] == fr["mail_subject"]
    assert "les campagnes xinjiang, detention" in text_of(mail)
    assert (await press(site.web, links(mail)["join/confirm"][0])).status_code == 200
    held = site.store.people.export("amelie@example.net")
    assert held is not None
    assert sorted(c["scope"] for c in held["consents"]) == ["tag:detention", "tag:xinjiang"]
    assert {(c["channels"], c["languages"], c["monthly_cap"], c["expires_at"]) for c in held["consents"]} == {
        ("email,fax", "*", None, None)
    }
    # Not asked to choose, the replies go to the organisation: no address goes to the officials.
    assert {c["replies"] for c in held["consents"]} == {"organisation"}


async def test_the_page_speaks_each_language_of_the_catalogue(site: Site) -> None:
    for lang in LANGS:
        page = await site.web.get(f"/join?lang={lang}")
        t = text_for(lang)
        assert page.status_code == 200 and f'<html lang="{lang}">' in page.text, lang
        for key in (
            "title_general",
            "legend_you",
            "scope_all",
            "agree",
            "submit",
            "replies",
            "replies_direct",
        ):
            assert escape(t[key]) in page.text, (lang, key)
        for key in ("consent_text", "replies_risk", "replies_organisation"):
            assert escape(t[key].format(org="Letters (demo)")) in page.text, (lang, key)
        # The safe answer is the one chosen until the supporter picks the other.
        assert (
            re.search(r'value="organisation" checked', page.text)
            and 'value="direct" checked' not in page.text
        )
    chinese = await site.web.get("/join", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert '<html lang="zh-Hans">' in chinese.text
    fallback = await site.web.get("/join", headers={"Accept-Language": "tlh, ja;q=0.8"})
    assert '<html lang="en">' in fallback.text


async def test_readers_of_traditional_characters_get_english_as_in_their_receipts(site: Site) -> None:
    """Not Simplified characters, a script they did not choose: the next language they accept,
    else English, as receipts.texts_for does for a zh-TW supporter."""
    for accepted, shown in (("zh-TW", "en"), ("zh-HK, fr;q=0.5", "fr"), ("zh-Hant-TW, zh;q=0.8", "zh-Hans")):
        page = await site.web.get("/join", headers={"Accept-Language": accepted})
        assert f'<html lang="{shown}">' in page.text, accepted


async def test_drafts_closed_and_unknown_actions_are_not_found(site: Site) -> None:
    for action_id in ("draft-one", "closed-one", "no-such-action"):
        got = await site.web.get(f"/join/{action_id}")
        assert got.status_code == 404 and text_for("en")["closed_title"] in got.text, action_id
        posted = await site.web.post(f"/join/{action_id}", data={**FORM, "email": "x@example.net"})
        assert posted.status_code == 404
    site.store.set_action_state(ACTION, by="staff", now=NOW, status="closed")  # closed from the dashboard
    assert (await site.web.get(f"/join/{ACTION}")).status_code == 404


async def test_every_problem_is_shown_by_its_field_and_what_was_typed_is_kept(site: Site) -> None:
    en = text_for("en")
    bad = {
        "name": "",
        "city": "<b>Lyon</b>\u202e",
        "country": "XX",
        "cap": "500",
        "channels": [],
        "words": "x" * 700,
        "agree": "",
    }
    got = await join(site.web, "not-an-address", f"/join/{ACTION}", **bad)
    assert got.status_code == 400 and en["err_form"] in got.text
    for problem in (
        en["err_name"],
        en["err_email"],
        en["err_characters"],
        en["err_choice"],
        en["err_cap"].format(max=100),
        en["err_channels"],
        en["err_words"].format(limit=600),
        en["err_agree"],
    ):
        assert problem in got.text, problem
    assert 'value="not-an-address"' in got.text and "&lt;b&gt;Lyon&lt;/b&gt;" in got.text
    assert 'value="500"' in got.text and "<b>Lyon" not in got.text
    assert site.smtp.received() == []


# One consent, spelt as each medium might (case, padding, locale-style tags, wide digits).
SPELT: dict[str, Any] = {
    "name": " Ann Lee ",
    "language": "EN",
    "city": "Lyon",
    "country": "fr",
    "channels": ["FAX", "email"],
    "languages": ["zh_hans", "EN"],
    "name_display": "Name",
    "receipts": "Weekly",
    "replies": "Direct",
}
KEPT = ("name", "language", "city", "country", "receipts")
TERMS = ("scope", "channels", "languages", "name_display", "replies", "monthly_cap")


def kept_of(store: Store, email: str) -> dict[str, Any]:
    """What the store holds of a supporter and their consent, but how and when it came."""
    held = store.people.export(email)
    assert held is not None, email
    [consent] = held["consents"]
    return {**{k: held[k] for k in KEPT}, **{k: consent[k] for k in TERMS}}


async def by_form(site: Site, email: str) -> None:
    values = {k: SPELT[k] for k in ("name", "language", "city", "country", "channels", "receipts", "replies")}
    values.update(sign=SPELT["languages"], display=SPELT["name_display"], cap="０５")
    before = len(site.smtp.received())
    assert (await join(site.web, email, "/join", **values)).status_code == 200
    confirm = links(site.smtp.wait_for(before + 1)[before])["join/confirm"][0]
    assert (await press(site.web, confirm)).status_code == 200


async def by_api(site: Site, email: str) -> None:
    site.ctx.settings = site.ctx.settings.model_copy(update={"api_token": SecretStr("t" * 40)})
    body = {**SPELT, "email": email, "scope": ["all"], "monthly_cap": 5}
    body.update(consent_version="v1", opted_in_at=NOW.isoformat())
    headers = {"Authorization": "Bearer " + "t" * 40}
    assert (await site.web.post("/api/consents", json=body, headers=headers)).status_code == 201


def by_csv(site: Site, email: str, folder: Path) -> None:
    row = {**SPELT, "email": email, "scope": "all", "monthly_cap": "05", "consent_version": "v1"}
    row.update(channels="FAX;email", languages="zh_hans;EN", opted_in_at=NOW.isoformat())
    path = folder / "supporters.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(row)
    assert import_file(site.store, path, KnownScopes.of(site.ctx.actions().values()), NOW) == 1


async def test_a_consent_by_form_csv_or_api_is_stored_alike(site: Site, tmp_path: Path) -> None:
    await by_form(site, "Ann.Form@Example.NET")
    await by_api(site, "Ann.Api@Example.NET")
    by_csv(site, "Ann.Csv@Example.NET", tmp_path)
    kept = {how: kept_of(site.store, f"ann.{how}@example.net") for how in ("form", "api", "csv")}
    assert (
        kept["form"]
        == kept["api"]
        == kept["csv"]
        == {
            "name": "Ann Lee",
            "language": "en",
            "city": "Lyon",
            "country": "FR",
            "receipts": "weekly",
            "scope": "all",
            "channels": "email,fax",
            "languages": "en zh-Hans",
            "name_display": "name",
            "replies": "direct",
            "monthly_cap": 5,
        }
    )


def longest_consent_label(tmp_path: Path) -> str:
    """The longest consent text version the settings accept."""
    for length in range(200, 0, -1):
        try:
            web_settings(tmp_path, consent_text_version="v" * length)
        except ValidationError:
            continue
        return "v" * length
    raise AssertionError("no consent text version is accepted")


async def test_the_longest_consent_label_is_recorded_as_the_importer_would_take_it(
    site: Site, tmp_path: Path
) -> None:
    """The form records the label with the page's language and a digest of the words: the whole
    must still be a consent_version the CSV import and the API accept (and the column holds)."""
    site.ctx.settings = site.ctx.settings.model_copy(
        update={"consent_text_version": longest_consent_label(tmp_path)}
    )
    sent = await join(site.web, "ann@example.net", "/join?lang=zh-Hans", language="zh-Hans")
    assert sent.status_code == 200
    confirm = links(site.smtp.wait_for(1)[0])["join/confirm"][0]
    assert (await press(site.web, confirm)).status_code == 200
    held = site.store.people.export("ann@example.net")
    assert held is not None
    [consent] = held["consents"]
    assert consent["text_version"] == text_version(site.ctx.settings, "zh-Hans")
    assert fields.text(consent["text_version"], "consent_version", required=True)


# Tokens --------------------------------------------------------------------------------------------
async def confirmation_links(site: Site, email: str) -> dict[str, tuple[str, str]]:
    before = len(site.smtp.received())
    assert (await join(site.web, email)).status_code == 200
    mail = site.smtp.wait_for(before + 1)[before]
    assert mail.rcpt_tos == (email,)
    return links(mail)


async def test_forged_misused_expired_and_replayed_links_are_refused(site: Site) -> None:
    found = await confirmation_links(site, "eve@example.net")
    confirm, revoke = found["join/confirm"][0], found["revoke"][0]
    token = confirm.rsplit("/", 1)[1]
    forged = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]  # inside the signature
    opt_in = tokens.read(site.store.instance_secret(), tokens.CONFIRM, token)
    # Made an hour past the confirmation link's lifetime (tokens are checked against real time).
    long_ago = dt.datetime.now(dt.UTC) - tokens.MAX_AGE[tokens.CONFIRM] - dt.timedelta(hours=1)
    assert isinstance(opt_in, int)
    expired = tokens.sign(site.store.instance_secret(), tokens.CONFIRM, opt_in, at=long_ago)
    refused = {
        "forged": f"/join/confirm/{forged}",
        "a revoke token": f"/join/confirm/{revoke.rsplit('/', 1)[1]}",
        "expired": f"/join/confirm/{expired}",
    }
    form = await form_token(site.web)
    for why, path in refused.items():
        shown, pressed = await site.web.get(path), await site.web.post(path, data={"form_token": form})
        assert shown.status_code == pressed.status_code == 400, why
        assert (
            text_for("en")["invalid_body"] in shown.text and text_for("en")["invalid_body"] in pressed.text
        ), why
    assert (await site.web.get(f"/revoke/{token}")).status_code == 400  # and a confirm token as revoke
    assert site.store.people.export("eve@example.net") is None
    assert (await press(site.web, confirm)).status_code == 200
    replayed = await press(site.web, confirm)
    assert replayed.status_code == 410 and text_for("en")["used_title"] in replayed.text


# Abuse -----------------------------------------------------------------------------------------------
async def test_answers_never_tell_whether_an_address_is_known(site: Site) -> None:
    known = await confirmation_links(site, "known@example.net")
    assert (await press(site.web, known["join/confirm"][0])).status_code == 200
    again = await join(site.web, "known@example.net")
    fresh = await join(site.web, "fresh@example.net")
    assert again.status_code == fresh.status_code == 200 and again.text == fresh.text
    assert "fresh@example.net" not in fresh.text
    site.smtp.wait_for(3)
    for _ in range(3):  # a pending form within the hour, then the per-email limit: the same answer
        repeat = await join(site.web, "fresh@example.net")
        assert repeat.status_code == 200 and repeat.text == fresh.text
    assert mails_to(site.smtp, "fresh@example.net") == 1


async def test_too_many_forms_from_one_address_are_refused_for_a_while(site: Site) -> None:
    for n in range(10):
        assert (await join(site.web, f"s{n}@example.net")).status_code == 200
    limited = await join(site.web, "s10@example.net")
    assert limited.status_code == 429 and text_for("en")["limited_body"] in limited.text
    assert int(limited.headers["retry-after"]) > 3000
    async with visitor(site.app, "198.51.100.7") as elsewhere:
        assert (await join(elsewhere, "s10@example.net")).status_code == 200
    assert len(site.smtp.wait_for(11)) == 11 and mails_to(site.smtp, "s10@example.net") == 1


async def test_forms_without_a_valid_token_and_cookie_do_nothing(site: Site) -> None:
    no_token = await site.web.post("/join", data={**FORM, "email": "csrf@example.net"})
    assert no_token.status_code == 403 and text_for("en")["err_refresh"] in no_token.text
    token = await form_token(site.web)
    async with visitor(site.app) as stranger:  # a cross-site post: the token, not the cookie
        other = await stranger.post("/join", data={**FORM, "email": "csrf@example.net", "form_token": token})
        assert other.status_code == 403
        await stranger.get("/join")  # its own cookie, someone else's token
        mixed = await stranger.post("/join", data={**FORM, "email": "csrf@example.net", "form_token": token})
        assert mixed.status_code == 403
    assert site.smtp.received() == []

    found = await confirmation_links(site, "csrf@example.net")
    assert (await site.web.post(found["join/confirm"][0])).status_code == 403
    assert site.store.people.export("csrf@example.net") is None
    assert (await press(site.web, found["join/confirm"][0])).status_code == 200
    refused = await site.web.post(found["revoke"][0], data={"something": "else"})
    assert refused.status_code == 403
    held = site.store.people.export("csrf@example.net")
    assert held is not None and held["consents"][0]["revoked_at"] is None


# Withdrawing -----------------------------------------------------------------------------------------
async def test_one_click_revoke_cancels_pending_letters(site: Site) -> None:
    found = await confirmation_links(site, "ruth@example.net")
    assert (await press(site.web, found["join/confirm"][0])).status_code == 200
    site.store.plan(
        ACTION, [("president-demo", "email"), ("ambassador-demo", "email")], NOW, tags=("xinjiang",)
    )
    assert statuses(site.store)["pending"] >= 1
    revoke = found["revoke"][0]
    shown = await site.web.get(revoke)  # the page: only a button
    assert shown.status_code == 200 and text_for("en")["revoke_button"] in shown.text
    assert statuses(site.store)["pending"] >= 1
    async with visitor(site.app, "203.0.113.5") as mail_client:  # no cookie, no form token: RFC 8058
        done = await mail_client.post(revoke, data={"List-Unsubscribe": "One-Click"})
        assert done.status_code == 200 and text_for("en")["revoked_title"] in done.text
        nobody = f"/revoke/{tokens.sign(site.store.instance_secret(), tokens.REVOKE, 'nobody@example.net')}"
        multipart = await mail_client.post(nobody, files={"List-Unsubscribe": (None, "One-Click")})
        assert multipart.status_code == 200 and multipart.text == done.text  # known or not: the same
    assert statuses(site.store)["pending"] == 0 and statuses(site.store)["cancelled"] >= 1
    held = site.store.people.export("ruth@example.net")
    assert held is not None and all(c["revoked_at"] for c in held["consents"])
    assert [(e["kind"], e["source"]) for e in held["consent_events"]][-1] == ("revoked", "link")


async def test_withdrawing_before_confirming_discards_the_waiting_form(site: Site) -> None:
    found = await confirmation_links(site, "notme@example.net")
    done = await press(site.web, found["revoke"][0])  # "this was not me", from the page's button
    assert done.status_code == 200 and text_for("en")["revoked_title"] in done.text
    late = await press(site.web, found["join/confirm"][0])
    assert late.status_code == 410 and site.store.people.export("notme@example.net") is None
    await join(site.web, "notme@example.net")  # nothing waits any more: a new form is mailed at once
    assert mails_to(site.smtp, "notme@example.net") == 2


async def test_a_failed_confirmation_email_is_logged_without_the_address(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    site.smtp.fail(at="rcpt", reply="550", times=1)
    with caplog.at_level(logging.WARNING, logger="dispatcher.web"):
        got = await join(site.web, "bounce.me@example.net")
    assert got.status_code == 200 and text_for("en")["sent_title"] in got.text
    assert "bounce.me" not in got.text
    assert "confirmation email was not sent" in caplog.text and "550" in caplog.text
    assert "bounce.me" not in caplog.text
    # The form that could not be mailed is dropped: asking again sends at once, not in an hour.
    await join(site.web, "bounce.me@example.net")
    assert [m.rcpt_tos for m in site.smtp.received()] == [("bounce.me@example.net",)]
