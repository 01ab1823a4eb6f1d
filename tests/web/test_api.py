"""The CRM API over HTTP, on the real app over a SQLite file and PostgreSQL: bearer token only,
consents created, changed and withdrawn through it, and every bad field named."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dispatcher.store import Store
from tests.support.actions import action_data, write_action
from tests.support.web_client import client, web_settings

TOKEN = "a-long-random-api-token-for-the-crm-0123456789"
PAIRS = [("t1", "email"), ("t1", "fax")]
CONSENT: dict[str, Any] = {
    "email": "Ann.Lee@Example.NET",
    "name": "Ann Lee",
    "language": "en",
    "city": "Leeds",
    "country": "GB",
    "scope": ["act", "tag:urgent"],
    "channels": ["email"],
    "consent_version": "2026-11",
    "opted_in_at": "2026-01-01T09:00:00+01:00",
}


def write_actions(folder: Path) -> Path:
    """Two actions: "act" tagged urgent, and "other"."""
    folder.mkdir()
    for action_id, tags in (("act", ["urgent"]), ("other", [])):
        target = {"id": "t1", "name": "T1", "email": "t1@example.org", "channels": ["email"]}
        write_action(folder, action_data(action_id, [target], tags=tags))
    return folder


@pytest.fixture
async def api(tmp_path: Path, store: Store) -> AsyncIterator[httpx.AsyncClient]:
    settings = web_settings(tmp_path, api_token=TOKEN, actions_dir=write_actions(tmp_path / "actions"))
    async with client(settings, store) as c:
        c.headers["Authorization"] = f"Bearer {TOKEN}"
        yield c


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def statuses(store: Store) -> Counter[tuple[str, str]]:
    return Counter({(q.channel, q.status): q.count for q in store.queue_counts()})


async def post(api: httpx.AsyncClient, **changes: Any) -> httpx.Response:
    body = {k: v for k, v in {**CONSENT, **changes}.items() if v is not None}
    return await api.post("/api/consents", json=body)


@pytest.mark.parametrize("token", [None, ""])  # unset, or set but empty: no API either way
async def test_without_the_token_setting_the_api_does_not_exist(
    tmp_path: Path, store: Store, token: str | None
) -> None:
    async with client(web_settings(tmp_path, api_token=token), store) as web:
        for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}, {"Authorization": "Bearer "}):
            assert (await web.post("/api/consents", json=CONSENT, headers=headers)).status_code == 404
            assert (await web.get("/api/consents/a@example.net", headers=headers)).status_code == 404
            assert (await web.delete("/api/consents/a@example.net", headers=headers)).status_code == 404
    assert store.supporter_count() == 0


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong", f"Bearer {TOKEN}x", f"Basic {TOKEN}", f"Bearer {TOKEN[:-1]}"],
)
async def test_a_missing_or_wrong_token_is_refused(
    api: httpx.AsyncClient, store: Store, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    if authorization is None:
        del api.headers["Authorization"]
    for response in (
        await api.post("/api/consents", json=CONSENT, headers=headers),
        await api.get("/api/consents/ann.lee@example.net", headers=headers),
        await api.delete("/api/consents/ann.lee@example.net", headers=headers),
    ):
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == 'Bearer realm="api"'
    assert store.supporter_count() == 0


async def test_a_consent_is_created_shown_and_planned(api: httpx.AsyncClient, store: Store) -> None:
    created = await post(api, words={"act": "<b>Free them</b> {{ now }}\x07 please"})
    assert created.status_code == 201, created.text
    assert created.json() == {"email": "ann.lee@example.net", "consents": ["act", "tag:urgent"]}
    assert created.headers["cache-control"] == "no-store"
    shown = await api.get("/api/consents/ANN.LEE@example.net")
    assert shown.status_code == 200
    consents = {c["scope"]: c for c in shown.json()["consents"]}
    assert sorted(consents) == ["act", "tag:urgent"]
    act = consents["act"]
    assert (act["state"], act["channels"], act["languages"], act["source"]) == (
        "live",
        ["email"],
        None,
        "api",
    )
    assert act["opted_in_at"] == act["confirmed_at"] == "2026-01-01T08:00:00+00:00"  # the CRM vouches
    assert act["consent_version"] == "2026-11" and act["name_display"] == "full"
    assert act["replies"] == "organisation"  # unless the CRM says the supporter chose direct
    assert [e["kind"] for e in shown.json()["events"]] == ["granted", "confirmed"] * 2
    # Planned: by email only (the consent's channel), for "act" by id and by its tag.
    assert store.plan("act", PAIRS, now(), tags=("urgent",)) == 1
    assert store.plan("other", PAIRS, now()) == 0
    assert statuses(store) == {("email", "pending"): 1}
    held = store.people.export("ann.lee@example.net")
    assert held is not None
    assert [w["words"] for w in held["personal_words"]] == ["Free them now please"]  # text, not markup


async def test_the_optional_terms_are_recorded(api: httpx.AsyncClient) -> None:
    terms = {
        "languages": ["en", "zh-hans"],
        "name_display": "name",
        "monthly_cap": 12,
        "expires_at": "2030-01-01T00:00:00+00:00",
        "receipts": "monthly",
        "replies": "direct",
    }
    assert (await post(api, scope=["all"], **terms)).status_code == 201
    shown = (await api.get("/api/consents/ann.lee@example.net")).json()
    [consent] = shown["consents"]
    assert consent["languages"] == ["en", "zh-Hans"] and consent["name_display"] == "name"
    assert consent["monthly_cap"] == 12 and consent["expires_at"] == "2030-01-01T00:00:00+00:00"
    assert shown["receipts"] == "monthly" and consent["replies"] == "direct"


async def test_posting_other_channels_changes_the_consent(api: httpx.AsyncClient, store: Store) -> None:
    assert (await post(api, scope=["act"])).status_code == 201
    store.plan("act", PAIRS, now())
    again = await post(api, scope=["act"], channels=["fax"])
    assert again.status_code == 201 and again.json()["consents"] == ["act"]
    shown = (await api.get("/api/consents/ann.lee@example.net")).json()
    states = [(c["state"], c["channels"]) for c in shown["consents"]]
    assert states == [("ended", ["email"]), ("live", ["fax"])]
    assert [e["kind"] for e in shown["events"]] == ["granted", "confirmed", "changed"]
    # The letter by email, never tried, is gone; planning again makes the one by fax.
    assert statuses(store) == {}
    assert store.plan("act", PAIRS, now()) == 1 and statuses(store) == {("fax", "pending"): 1}
    # The same consent once more changes nothing.
    assert (await post(api, scope=["act"], channels=["fax"])).status_code == 201
    assert len((await api.get("/api/consents/ann.lee@example.net")).json()["events"]) == 3


async def test_revoking_cancels_the_pending_letters(api: httpx.AsyncClient, store: Store) -> None:
    assert (await post(api)).status_code == 201
    assert store.plan("act", PAIRS, now(), tags=("urgent",)) == 1
    revoked = await api.delete("/api/consents/Ann.Lee@example.net")
    assert revoked.status_code == 200 and revoked.json() == {"cancelled": 1}
    assert statuses(store) == {("email", "cancelled"): 1}
    shown = (await api.get("/api/consents/ann.lee@example.net")).json()
    assert {c["state"] for c in shown["consents"]} == {"revoked"}
    assert shown["events"][-1]["kind"] == "revoked" and shown["events"][-1]["source"] == "api"
    assert store.plan("act", PAIRS, now(), tags=("urgent",)) == 0
    [(_, entry)] = store.accounts.audit_entries(None, 10)
    assert (entry.actor, entry.action, entry.subject) == ("api", "consent revoked", "a supporter")
    # The CRM sending its old record again is old news; a consent given since is a new one.
    assert (await post(api)).json()["consents"] == []
    given_again = await post(api, opted_in_at=now().isoformat())
    assert given_again.json()["consents"] == ["act", "tag:urgent"]


async def test_an_unknown_supporter_is_404(api: httpx.AsyncClient) -> None:
    for response in (
        await api.get("/api/consents/nobody@example.net"),
        await api.delete("/api/consents/nobody@example.net"),
        await api.get("/api/consents/not-an-email"),
        await api.get("/api/consents/"),
    ):
        assert response.status_code == 404
        assert response.json() == {"error": "no supporter with that email"}


async def test_every_bad_field_is_named(api: httpx.AsyncClient, store: Store) -> None:
    bad = {
        "email": "not-an-email",
        "name": "Ann\u202e Lee",
        "language": 7,
        "scope": ["act", "nope", "tag:missing"],
        "channels": ["post"],
        "consent_version": None,  # left out
        "monthly_cap": "5",
        "expires_at": "2025-01-01T00:00:00+00:00",
        "receipts": "daily",
        "languages": "en",
        "words": {"other": "x" * 700, "gone": "hello"},
        "chanels": ["email"],
    }
    response = await post(api, **bad)
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert errors == {
        "email": errors["email"],
        "name": errors["name"],
        "language": "language must be a string",
        "scope": "scope: unknown action id(s) nope, and no action has the tag(s) missing",
        "channels": "channels: unknown channel(s) post (the channels are email and fax)",
        "consent_version": "consent_version is missing",
        "monthly_cap": "monthly_cap must be a whole number",
        "expires_at": "expires_at is not after opted_in_at",
        "receipts": "receipts 'daily' is not one of off, weekly, monthly",
        "languages": "languages must be a list of strings",
        "words.other": "your own words are longer than 600 characters",
        "words.gone": "unknown action id",
        "chanels": "unknown field",
    }
    assert errors["email"].startswith("email: 'not-an-email' is not a valid email address")
    assert errors["name"].startswith("name contains an invisible text-direction control character")
    assert store.supporter_count() == 0


@pytest.mark.parametrize(
    ("changes", "field", "problem"),
    [
        ({"scope": []}, "scope", "scope is empty"),
        ({"channels": ["email;fax"]}, "channels", "channels: an item contains ';'"),
        ({"channels": [1]}, "channels", "channels must be a list of strings"),
        ({"monthly_cap": True}, "monthly_cap", "monthly_cap must be a whole number"),
        ({"monthly_cap": 1001}, "monthly_cap", "monthly_cap '1001' is not a whole number from 1 to 1000"),
        ({"monthly_cap": 2.0}, "monthly_cap", "monthly_cap must be a whole number"),
        ({"opted_in_at": "2099-01-01T00:00:00+00:00"}, "opted_in_at", "opted_in_at is in the future"),
        ({"opted_in_at": "2026-01-01T09:00:00"}, "opted_in_at", "opted_in_at needs a UTC offset"),
        ({"consent_version": "v" * 65}, "consent_version", "consent_version is longer than 64 characters"),
        ({"words": ["act", "hello"]}, "words", "words must be an object of action ids and texts"),
    ],
)
async def test_a_bad_field_is_422(
    api: httpx.AsyncClient, changes: dict[str, Any], field: str, problem: str
) -> None:
    response = await post(api, **changes)
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert list(errors) == [field] and errors[field].startswith(problem), errors


async def test_bodies_that_are_not_a_consent(api: httpx.AsyncClient, store: Store) -> None:
    assert (await api.post("/api/consents", content=b"email=a@example.net")).status_code == 400
    assert (await api.post("/api/consents", content=b"\xff\xfe{}")).status_code == 400
    utf16 = json.dumps(CONSENT).encode("utf-16")  # JSON between systems is UTF-8 only
    assert (await api.post("/api/consents", content=utf16)).status_code == 400
    assert (await api.post("/api/consents", content=b"1" * 5000)).status_code == 400  # too long an int
    wrong = await api.post("/api/consents", json=[CONSENT])
    assert wrong.status_code == 422 and wrong.json() == {"errors": {"body": "the body must be a JSON object"}}
    huge = {**CONSENT, "padding": "x" * 70_000}
    assert (await api.post("/api/consents", json=huge)).status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit holds while reading
        for _ in range(100):
            yield b" " * 1024

    assert (await api.post("/api/consents", content=chunks())).status_code == 413
    assert store.supporter_count() == 0


async def test_the_token_is_never_logged(api: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await post(api)
    await post(api, channels=["pigeon"])
    await api.get("/api/consents/ann.lee@example.net")
    await api.delete("/api/consents/ann.lee@example.net")
    await api.get("/api/consents/ann.lee@example.net", headers={"Authorization": "Bearer wrong"})
    assert caplog.records  # the HTTP client logs every request: something was captured
    assert not [r for r in caplog.records if TOKEN in r.getMessage()]


async def test_a_consent_past_its_expiry_is_shown_expired_not_live(api: httpx.AsyncClient) -> None:
    # No letter goes on it (store.consent.live): the CRM must not read it as one that does.
    created = await post(api, scope=["act"], expires_at="2026-06-01T00:00:00+00:00")
    assert created.status_code == 201 and created.json()["consents"] == []
    shown = (await api.get("/api/consents/ann.lee@example.net")).json()
    assert [c["state"] for c in shown["consents"]] == ["expired"]
    assert (await post(api, scope=["other"], expires_at="2099-01-01T00:00:00+00:00")).status_code == 201
    shown = (await api.get("/api/consents/ann.lee@example.net")).json()
    assert sorted(c["state"] for c in shown["consents"]) == ["expired", "live"]
