"""The Sinch adapter end to end: the real dispatcher, a real SQLite file, our web app on loopback
and a fake Sinch Fax API v3 (``tests/support/fax_servers/sinch.py``) that takes the upload, dials
nothing, and POSTs its FAX_COMPLETED callbacks back with the Basic credentials of the callback
URL it was given."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from dispatcher.actions import controls
from dispatcher.actions.files import load_actions
from dispatcher.channels import make_channels
from dispatcher.channels.fax import fax_reference
from dispatcher.models import AttemptRow
from dispatcher.providers.sinch import callback_password, failure_of
from dispatcher.sending.runtime import Dispatcher, utcnow
from dispatcher.settings import Settings
from dispatcher.store import Store, open_store
from dispatcher.store.failures import Failure
from dispatcher.web import app_for
from tests.campaigns.test_campaign_shapes import TEMPLATE, supporters
from tests.support import actions
from tests.support.asgi_server import serve
from tests.support.fax_servers import sinch as fake_sinch
from tests.support.fax_servers.sinch import SinchFake
from tests.support.processes import free_port, until
from tests.unit.test_faxpdf import MISSING

pytestmark = pytest.mark.skipif(bool(MISSING), reason=MISSING)

# Ofcom keeps 020 7946 0000–0999 for drama: valid numbers that reach nobody.
MINISTER = "+442079460123"
PROJECT, KEY_ID, KEY_SECRET = "project-1", "key-id", "key-secret"


@dataclass
class World:
    fake: SinchFake
    settings: Settings
    store: Store
    tmp: Path
    web: str  # our web app's base URL

    def faxes(self) -> list[fake_sinch.Fax]:
        return list(self.fake.faxes.values())

    def log(self) -> list[AttemptRow]:
        return [a for a in self.store.attempt_log() if a.channel == "fax"]

    def statuses(self) -> list[str]:
        return [r.status for r in self.store.queue_counts() for _ in range(r.count)]


def write_action(tmp: Path) -> None:
    target = {
        "id": "minister",
        "name": "Minister",
        "salutation": {"en": "Dear Minister"},
        "fax": "020 7946 0123",
        "country": "GB",
        "channels": ["fax"],
    }
    actions.write_action(tmp / "actions", actions.action_data("a", [target], title="Fax action"))
    (tmp / "templates" / "a").mkdir(parents=True)
    (tmp / "templates" / "a" / "en.j2").write_text(TEMPLATE)


def make_settings(tmp: Path, fake_url: str, public_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp / 'd.db'}",
        "actions_dir": tmp / "actions",
        "templates_dir": tmp / "templates",
        "outbox": tmp / "outbox",
        "fax_provider": "sinch",
        "sinch_base_url": f"{fake_url}/v3",
        "sinch_project_id": PROJECT,
        "sinch_key_id": KEY_ID,
        "sinch_key_secret": KEY_SECRET,
        "public_url": public_url,
        "fax_max_attempts": 2,  # the web app applies callbacks by the same policy
        "fax_retry_initial": 0.2,
        "fax_retry_max": 1.0,
        "retry_initial": 0.2,
        "retry_max": 1.0,
    }
    return Settings.model_validate(values | overrides)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    fake = SinchFake(PROJECT, KEY_ID, KEY_SECRET)
    port = free_port()
    write_action(tmp_path)
    with serve(fake.app) as fake_url:
        settings = make_settings(tmp_path, fake_url, f"http://127.0.0.1:{port}")
        store = open_store(settings.database_url)
        store.import_supporters(supporters(1), utcnow())
        web_store = open_store(settings.database_url)  # the web app as its own process would
        try:
            with serve(app_for(settings, web_store), port) as web:
                yield World(fake, settings, store, tmp_path, web)
        finally:
            fake.end_hangs()
            store.close()
            web_store.close()


def with_settings(w: World, **overrides: Any) -> Settings:
    return Settings.model_validate(w.settings.model_dump(by_alias=True) | overrides)


async def run_once(settings: Settings, store: Store) -> Dispatcher:
    dispatcher = Dispatcher(settings, store, make_channels(settings, store), worker_id="w")
    await asyncio.wait_for(dispatcher.run_once(), 30)
    return dispatcher


async def run_until(w: World, settings: Settings, check: Callable[[], bool], what: str) -> None:
    """``run_forever`` until ``check`` holds, then stopped."""
    dispatcher = Dispatcher(settings, w.store, make_channels(settings, w.store), worker_id="w")
    task = asyncio.create_task(dispatcher.run_forever())
    try:
        await until(lambda: check() or task.done(), 20, what)
        assert check(), f"the dispatcher stopped before {what}"
    finally:
        dispatcher.stop()
        await asyncio.wait_for(task, 15)


# delivered ---------------------------------------------------------------------------------------
async def test_a_fax_is_uploaded_tagged_and_confirmed_by_its_callback(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    world.fake.script(MINISTER, fake_sinch.HOLD)  # so that the run's own poll finds it queued
    await run_once(world.settings, world.store)
    assert world.statuses() == ["submitted"]
    [fax] = world.faxes()
    secret = world.store.instance_secret()
    password = callback_password(secret)
    delivery = world.log()[0].delivery_id
    assert fax.pdf.startswith(b"%PDF-") and fax.to == MINISTER
    assert fax.labels == {"reference": fax_reference(secret, delivery)}
    assert (
        fax.callback_url
        == f"http://sinch:{password}@127.0.0.1:{world.web.rsplit(':', 1)[1]}/webhooks/fax/sinch"
    )
    assert fax.callback_type == "application/json"

    world.fake.finish(fax.id)
    await until(lambda: bool(world.fake.callbacks), 5, "the callback")
    assert world.fake.callbacks == [(fax.id, 200)]
    assert world.statuses() == ["sent"]
    assert world.fake.refused_auth == 0
    assert password not in caplog.text and KEY_SECRET not in caplog.text


# failures and retries ----------------------------------------------------------------------------
async def test_a_retry_asks_sinch_for_the_fax_before_dialling_again(world: World) -> None:
    world.fake.script(MINISTER, fake_sinch.BUSY, fake_sinch.DELIVER)
    await run_until(world, world.settings, lambda: world.statuses() == ["sent"], "the retry")
    first, second = world.faxes()
    assert first.labels == second.labels  # one reference per delivery, on every attempt
    # The retry asked Sinch first (a list), found only the failed fax, and dialled again.
    assert any(m == "GET" and p.endswith("/faxes") for m, p, _, _ in world.fake.requests)


async def test_wrong_api_credentials_pause_the_channel_and_fax_nothing(world: World) -> None:
    settings = with_settings(world, sinch_key_secret="not-the-secret")
    await run_once(settings, world.store)
    [row] = world.log()
    assert (row.outcome, row.code) == ("retry", 401)
    assert world.fake.refused_auth == 1 and world.faxes() == []


# callbacks ---------------------------------------------------------------------------------------
async def test_a_callback_before_our_commit_and_a_stale_one_after(world: World) -> None:
    world.fake.script(MINISTER, fake_sinch.OUT_OF_ORDER)
    await run_once(world.settings, world.store)
    [fax] = world.faxes()
    await until(lambda: len(world.fake.callbacks) == 2, 5, "the stale callback")
    # The final word reached us before Sinch answered the upload: kept, applied at our commit.
    assert world.fake.callbacks == [(fax.id, 200), (fax.id, 200)]
    assert world.statuses() == ["sent"]
    assert [r.outcome for r in world.log()] == ["submitted", "sent"]


async def test_a_callback_with_wrong_credentials_is_refused_and_polling_resolves(world: World) -> None:
    world.fake.script(MINISTER, fake_sinch.BAD_AUTH)
    await run_once(world.settings, world.store)
    [fax] = world.faxes()
    await until(lambda: len(world.fake.callbacks) == 1, 5, "the callback")
    assert world.fake.callbacks == [(fax.id, 401)]
    assert world.statuses() == ["submitted"]
    await run_once(world.settings, world.store)  # its poll asks Sinch
    assert world.statuses() == ["sent"]
    assert world.log()[-1].worker == "poll:w"


async def test_forged_and_malformed_callbacks_are_refused(world: World) -> None:
    world.fake.script(MINISTER, fake_sinch.HOLD)
    await run_once(world.settings, world.store)
    [fax] = world.faxes()
    view = {**fax.view(PROJECT), "status": "COMPLETED", "completedTime": "2030-01-01T00:00:00Z"}
    forged = json.dumps({"event": "FAX_COMPLETED", "fax": view}).encode()
    good = basic("sinch", callback_password(world.store.instance_secret()))
    url = f"{world.web}/webhooks/fax/sinch"
    cases = [
        ({}, forged, 401),
        ({"Authorization": basic("sinch", "guessed")}, forged, 401),
        ({"Authorization": basic("admin", callback_password(world.store.instance_secret()))}, forged, 401),
        ({"Authorization": "Bearer " + callback_password(world.store.instance_secret())}, forged, 401),
        ({"Authorization": "Basic !!!"}, forged, 401),
        ({"Authorization": good}, b"{not json", 400),
        ({"Authorization": good}, b'{"event": "FAX_COMPLETED", "fax": {}}', 400),
        ({"Authorization": good}, b'{"event": "INCOMING_FAX", "fax": {"id": "x"}}', 200),
    ]
    async with httpx.AsyncClient() as client:
        for headers, body, expected in cases:
            answer = await client.post(
                url, content=body, headers={"Content-Type": "application/json", **headers}
            )
            assert answer.status_code == expected, (headers, body)
    assert world.statuses() == ["submitted"]
    assert [r.outcome for r in world.log()] == ["submitted"]


async def test_a_form_callback_is_read_as_well(world: World) -> None:
    """A service configured for Sinch's default (multipart) callbacks still works."""
    world.fake.script(MINISTER, fake_sinch.HOLD)
    await run_once(world.settings, world.store)
    [fax] = world.faxes()
    fax.callback_type = "multipart/form-data"  # as if Sinch kept the service's setting
    world.fake.finish(fax.id)
    await until(lambda: bool(world.fake.callbacks), 5, "the callback")
    assert world.fake.callbacks == [(fax.id, 200)]
    assert world.statuses() == ["sent"]


# cancel ------------------------------------------------------------------------------------------
async def test_a_paused_action_leaves_its_queued_fax_to_finish(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.fake.script(MINISTER, fake_sinch.HOLD)
    await run_once(world.settings, world.store)
    [fax] = world.faxes()
    action = load_actions(world.settings.actions_dir).actions["a"]
    controls.pause(world.store, action, "staff", utcnow())
    caplog.set_level(logging.INFO, logger="dispatcher.fax")
    await run_once(world.settings, world.store)  # its sweep withdraws what the provider can
    assert f"sinch has no way to withdraw fax {fax.id}" in caplog.text
    assert f"sinch job {fax.id} is already on the line: left to finish" in caplog.text
    assert world.statuses() == ["submitted"]
    assert {m for m, _, _, _ in world.fake.requests} <= {"GET", "POST"}  # no cancel call exists
    world.fake.finish(fax.id)
    await until(lambda: world.statuses() == ["sent"], 5, "the held fax")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("error_type", "code", "failure"),
    [
        ("CALL_ERROR", 17, Failure.BUSY),
        ("LINE_ERROR", 16, Failure.NO_ANSWER),
        ("CALL_ERROR", 34, Failure.BAD_NUMBER),
        ("CALL_ERROR", 11, Failure.PROVIDER),
        ("FAX_ERROR", 132, Failure.NOT_A_FAX),
        ("FAX_ERROR", 133, Failure.BLOCKED),
        ("DOCUMENT_CONVERSION_ERROR", 133, Failure.DOCUMENT),  # the pair decides, not the code
        ("FAX_ERROR", 46, Failure.ACCOUNT),
        ("GENERAL_ERROR", 105, Failure.ACCOUNT),
        ("FATAL_ERROR", 24, Failure.PROVIDER),
        ("SOMETHING_NEW", 17, Failure.PROVIDER),
        ("CALL_ERROR", None, Failure.PROVIDER),
    ],
)
def test_sinch_error_codes_in_our_vocabulary(error_type: str, code: int | None, failure: Failure) -> None:
    assert failure_of(error_type, code) is failure
