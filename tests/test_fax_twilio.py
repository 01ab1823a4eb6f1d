"""The Twilio-shaped fax provider (SignalWire's Compatibility API) end to end: the real
dispatcher, a SQLite file, our web app under uvicorn (status callbacks and fax media) and a fake
of the provider's API on loopback that fetches each PDF and POSTs signed status callbacks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from twilio.request_validator import RequestValidator

from dispatcher.actions import controls
from dispatcher.actions.files import load_actions
from dispatcher.channels import make_channels
from dispatcher.channels.fax import fax_reference
from dispatcher.models import AttemptRow
from dispatcher.providers.twilio import WEBHOOK_PATH, carries, failure_of
from dispatcher.sending.runtime import Dispatcher, utcnow
from dispatcher.settings import Settings
from dispatcher.store import Store, open_store
from dispatcher.web import app_for
from tests.asgi_server import free_port, serve
from tests.conftest import cli_env
from tests.contract import world as contract_world
from tests.fax_servers.twilio import ACCOUNT, TOKEN, FakeTwilio, Fax
from tests.test_campaign_shapes import supporters
from tests.test_faxpdf import MISSING
from tests.test_kill import dispatcher_executable

pytestmark = pytest.mark.skipif(bool(MISSING), reason=MISSING)

ACTION = contract_world.ACTION
SENDER = "+442079460999"  # Ofcom's drama range: valid numbers that reach nobody
SIGNING_KEY = "PSK_test-signing-key"


# the world: an action, our web app, the fake provider ----------------------------------------------
def write_action(tmp_path: Path, numbers: list[str]) -> None:
    contract_world.write_action(tmp_path, contract_world.faxes({f"t{i}": n for i, n in enumerate(numbers)}))


@dataclass
class World:
    fake: FakeTwilio
    settings: Settings
    store: Store
    base_url: str  # the provider's, as configured


@contextlib.contextmanager
def world(tmp_path: Path, numbers: list[str], fake: FakeTwilio, **overrides: Any) -> Iterator[World]:
    write_action(tmp_path, numbers)
    port = free_port()
    with fake.running() as base_url:
        values: dict[str, Any] = {
            "database_url": f"sqlite:///{tmp_path / 'd.db'}",
            "actions_dir": tmp_path / "actions",
            "templates_dir": tmp_path / "templates",
            "outbox": tmp_path / "outbox",
            "fax_outbox": tmp_path / "fax-outbox",
            "fax_provider": "twilio",
            "twilio_base_url": base_url,
            "twilio_account_sid": ACCOUNT,
            "twilio_auth_token": TOKEN,
            "twilio_from": SENDER,
            "public_url": f"http://127.0.0.1:{port}",
            "fax_retry_initial": 0.2,
            "retry_initial": 0.2,
        }
        settings = Settings.model_validate(values | overrides)
        store = open_store(settings.database_url)
        store.import_supporters(supporters(1), utcnow())
        try:
            with serve(app_for(settings, store), port):
                yield World(fake, settings, store, base_url)
        finally:
            store.close()


def dispatcher(w: World, worker: str = "w") -> Dispatcher:
    return Dispatcher(w.settings, w.store, make_channels(w.settings, w.store), worker_id=worker)


async def run_once(w: World) -> None:
    await dispatcher(w).run_once()


async def until(what: str, predicate: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting until {what}")
        await asyncio.sleep(0.02)


def statuses(store: Store) -> dict[str, str]:
    return {r.target_id: r.status for r in store.queue_counts()}  # one supporter: one each


def log_of(store: Store, target: str) -> list[AttemptRow]:
    return list(store.attempt_log(ACTION, target))


def outcomes(store: Store, target: str) -> list[str]:
    return [a.outcome for a in log_of(store, target)]


def answers(fake: FakeTwilio, number: str) -> list[tuple[str, int]]:
    """The status callbacks about faxes to this number, and what our web app answered."""
    return [(c.status, c.answer) for c in fake.callbacks if fake.faxes[c.sid].to == number]


# 1. delivered, confirmed by a signed callback; the fax media URL -----------------------------------
async def test_a_fax_is_delivered_and_confirmed_by_a_signed_callback(tmp_path: Path) -> None:
    number = "+442079460100"
    fake = FakeTwilio()
    fake.held.add(number)
    with world(tmp_path, [number], fake) as w:
        await run_once(w)  # submitted; the fax waits, queued, so the final poll learns nothing
        assert statuses(w.store) == {"t0": "submitted"}
        fake.held.clear()
        await until("the delivery is sent", lambda: statuses(w.store) == {"t0": "sent"})
        (fax,) = fake.to(number)
        # The fake notes our answer once it has it, which can be just after the store changed.
        await until("our answer to the callback", lambda: len(answers(fake, number)) == 2)
        assert answers(fake, number) == [("queued", 200), ("delivered", 200)]
        # The provider fetched the PDF from our web app; its URL names our reference.
        assert carries(fax.media_url, fax_reference(w.store.instance_secret(), 1))
        assert [(f.status, f.content_type, f.cache_control) for f in fake.fetches] == [
            (200, "application/pdf", "no-store")
        ]
        await check_media_url(w, fax.media_url)


async def check_media_url(w: World, url: str) -> None:
    token = url.split("/media/fax/")[1].split(".pdf")[0]
    # Inside the signature: its last base64 character also carries padding bits, which a
    # decoder ignores, so changing that one alone may change nothing.
    forged = token[:-5] + ("A" if token[-5] != "A" else "B") + token[-4:]

    class Yesterday(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 25 * 3600  # beyond MEDIA_TTL

    reference = fax_reference(w.store.instance_secret(), 1)
    expired = URLSafeTimedSerializer(w.store.instance_secret(), "fax-media", signer=Yesterday).dumps(
        reference
    )
    async with httpx.AsyncClient() as client:
        ok = await client.get(url)
        assert ok.status_code == 200 and ok.content.startswith(b"%PDF-")
        assert ok.headers["cache-control"] == "no-store"
        for bad in (forged, expired):
            gone = await client.get(f"{w.settings.public_url}/media/fax/{bad}.pdf")
            assert gone.status_code == 404 and b"%PDF" not in gone.content


# 3. callbacks: duplicate, out of order, badly signed, signed over another URL, unsigned ------------
async def test_callbacks_duplicate_out_of_order_and_refused(tmp_path: Path) -> None:
    numbers = [f"+44207946011{i}" for i in range(1, 6)]
    twice, late, badly, elsewhere, unsigned = numbers
    fake = FakeTwilio()
    fake.webhooks = {
        twice: "twice",
        late: "out-of-order",
        badly: "bad-signature",
        elsewhere: "wrong-url",
        unsigned: "unsigned",
    }
    fake.held.update(numbers)
    with world(tmp_path, numbers, fake) as w:
        await run_once(w)
        fake.held.clear()
        await until("every callback is answered", lambda: len(fake.callbacks) == 11)
        assert answers(fake, twice) == [("queued", 200), ("delivered", 200), ("delivered", 409)]
        assert answers(fake, late) == [("delivered", 200), ("sending", 200)]
        for number in (badly, elsewhere, unsigned):
            assert answers(fake, number) == [("queued", 403), ("delivered", 403)]
        assert statuses(w.store) == {
            "t0": "sent",
            "t1": "sent",
            "t2": "submitted",
            "t3": "submitted",
            "t4": "submitted",
        }
        assert outcomes(w.store, "t0") == outcomes(w.store, "t1") == ["submitted", "sent"]


async def test_signalwire_signing_key_and_forged_callbacks(tmp_path: Path) -> None:
    number = "+442079460120"
    fake = FakeTwilio(signing_key=SIGNING_KEY)
    fake.signature_header = "X-SignalWire-Signature"
    with world(tmp_path, [number], fake, twilio_signing_key=SIGNING_KEY) as w:
        await run_once(w)
        await until("the delivery is sent", lambda: statuses(w.store) == {"t0": "sent"})
        # The fake notes our answer once it has it, which can be just after the store changed.
        await until("our answer", lambda: answers(fake, number)[-1:] == [("delivered", 200)])
        url = f"{w.settings.public_url}{WEBHOOK_PATH}"
        busy = {
            "FaxSid": fake.to(number)[0].sid,
            "AccountSid": ACCOUNT,
            "FaxStatus": "failed",
            "ErrorCode": "34002",
        }

        def signed(params: dict[str, str], key: str = SIGNING_KEY, over: str = url) -> dict[str, str]:
            return {"X-SignalWire-Signature": RequestValidator(key).compute_signature(over, params)}

        attempts = [
            (busy, signed(busy, key=TOKEN), 403),  # the auth token is not the key once one is set
            ({**busy, "ErrorCode": "34003"}, signed(busy), 403),  # changed after signing
            (busy, signed(busy, over=url + "?again=1"), 403),  # signed for another URL
            (busy, {}, 403),  # unsigned
            ({**busy, "AccountSid": "another"}, signed({**busy, "AccountSid": "another"}), 403),
            (
                {"AccountSid": ACCOUNT, "FaxStatus": "busy"},
                signed({"AccountSid": ACCOUNT, "FaxStatus": "busy"}),
                400,
            ),
        ]
        async with httpx.AsyncClient() as client:
            for params, headers, expected in attempts:
                answer = await client.post(url, data=params, headers=headers)
                assert answer.status_code == expected, (params, answer.text)
            # Signed over the URL alone, but a JSON body: not a fax callback.
            json_body = await client.post(url, json=busy, headers=signed({}))
            assert json_body.status_code == 400
        assert statuses(w.store) == {"t0": "sent"}
        assert outcomes(w.store, "t0") == ["submitted", "sent"]


# 4. a crash between the provider's acceptance and our commit ------------------------------------------
async def test_a_fax_accepted_before_a_crash_is_found_not_sent_again(tmp_path: Path) -> None:
    number = "+442079460130"
    fake = FakeTwilio()
    fake.script[number] = ["hang", "deliver"]
    fake.max_page_size = 1  # find() has to follow next_page_uri
    executable = dispatcher_executable()
    with world(tmp_path, [number], fake) as w:
        for i in range(3):  # other letters' faxes to the same number fill the pages
            fake.add(number, SENDER, f"{w.settings.public_url}/media/fax/x.pdf?ref=d{90 + i}-x", "delivered")

        def ours() -> list[Fax]:
            return [f for f in fake.to(number) if "ref=d9" not in f.media_url]

        env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")} | cli_env(
            tmp_path,
            tmp_path,
            DISPATCHER_FAX_PROVIDER="twilio",
            DISPATCHER_TWILIO_BASE_URL=w.base_url,
            DISPATCHER_TWILIO_ACCOUNT_SID=ACCOUNT,
            DISPATCHER_TWILIO_AUTH_TOKEN=TOKEN,
            DISPATCHER_TWILIO_FROM=SENDER,
            DISPATCHER_PUBLIC_URL=str(w.settings.public_url),
            DISPATCHER_LEASE_SECONDS="2",
        )
        with (tmp_path / "first.log").open("wb") as out:
            first = await asyncio.create_subprocess_exec(
                executable, "run", "--worker-id", "w1", env=env, cwd=tmp_path, stdout=out, stderr=out
            )
            try:
                await until("the provider holds the fax", lambda: bool(ours()), within=30)
            finally:
                first.kill()  # SIGKILL: it never hears the provider's answer
                await first.wait()
        await until("the fax is delivered", lambda: ours()[0].status == "delivered")
        second = await asyncio.create_subprocess_exec(
            # Restarted under the same worker id: its leases are taken back at once (another id
            # would rightly wait for them to run out, and --once would leave the letter).
            executable,
            "run",
            "--once",
            "--worker-id",
            "w1",
            env=env,
            cwd=tmp_path,
            stderr=asyncio.subprocess.PIPE,
        )
        _, errors = await asyncio.wait_for(second.communicate(), 60)
        assert second.returncode == 0, errors.decode()
        assert len(ours()) == 1 and len(fake.calls) == 1
        assert statuses(w.store) == {"t0": "sent"}
        rows = log_of(w.store, "t0")
        assert Counter(a.outcome for a in rows) == {"interrupted": 1, "submitted": 1, "sent": 1}
        (found,) = (a for a in rows if a.outcome == "submitted")
        assert "found already submitted" in found.detail and found.job_id == ours()[0].sid
        assert fake.list_requests >= 4  # four faxes, one a page


# 6. withdrawn when the action is paused ---------------------------------------------------------------
async def test_pausing_withdraws_a_queued_fax_and_leaves_one_on_the_line(tmp_path: Path) -> None:
    queued, on_line = "+442079460150", "+442079460151"
    fake = FakeTwilio()
    fake.held.add(queued)
    fake.script[on_line] = ["stuck"]
    with world(tmp_path, [queued, on_line], fake) as w:
        await run_once(w)
        await until("one fax is on the line", lambda: fake.to(on_line)[0].status == "sending")
        action = load_actions(w.settings.actions_dir).actions[ACTION]
        controls.pause(w.store, action, "staff", utcnow())
        d = dispatcher(w)
        d.catalogue.reload()
        try:
            await d.refresh()
            await d.sweep()
        finally:
            for channel in d.channels.values():
                await channel.close()
            d.db.shutdown()
        assert fake.to(queued)[0].status == "canceled"
        assert fake.to(on_line)[0].status == "sending"
        assert statuses(w.store) == {"t0": "pending", "t1": "submitted"}
        withdrawn = log_of(w.store, "t0")[-1]
        assert withdrawn.outcome == "retry" and withdrawn.detail.startswith("cancelled")
        # The provider's own "canceled" callback changes nothing more.
        await until("the canceled callback is answered", lambda: ("canceled", 200) in answers(fake, queued))
        assert statuses(w.store) == {"t0": "pending", "t1": "submitted"}


def test_failure_codes_map_onto_the_vocabulary() -> None:
    assert failure_of("busy", None) == "busy"
    assert failure_of("no-answer", 34003) == "no answer"
    assert failure_of("failed", 34002) == "busy"
    assert failure_of("failed", 2) == "not a fax line"
    assert failure_of("failed", 34108) == "document error"
    assert failure_of("failed", 21211) == "bad number"
    assert failure_of("failed", 99999) == "provider error"
    assert failure_of("canceled", None) == "cancelled"
    assert failure_of("lost-in-space", None) == "provider error"
