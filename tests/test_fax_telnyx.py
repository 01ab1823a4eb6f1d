"""Telnyx end to end: the real dispatcher, a SQLite file, our web app under uvicorn and a fake
Telnyx on loopback that fetches the PDF and sends Ed25519-signed webhooks."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import mailbox
import os
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from dispatcher.actions import controls
from dispatcher.actions.files import load_actions
from dispatcher.channels import make_channels, media_host
from dispatcher.models import AttemptRow
from dispatcher.providers import ProviderError
from dispatcher.providers.telnyx import TelnyxProvider, failure_for
from dispatcher.sending.runtime import Dispatcher, utcnow
from dispatcher.settings import Settings
from dispatcher.store import Store, open_store
from dispatcher.store.failures import Failure
from dispatcher.web import app_for
from tests.asgi_server import free_port, serve
from tests.conftest import cli_env
from tests.contract import world as contract_world
from tests.contract.world import until
from tests.fax_servers.telnyx import (
    FakeTelnyx,
    Plan,
    public_key_b64,
    signed_headers,
)
from tests.test_campaign_shapes import supporters
from tests.test_faxpdf import MISSING
from tests.test_kill import dispatcher_executable, stop

pytestmark = pytest.mark.skipif(bool(MISSING), reason=MISSING)

API_KEY = "KEYtest0000notasecret"
CONNECTION = "1293384261075731499"
SENDER = "+442079460999"
# Ofcom keeps 020 7946 0000–0999 for drama: valid numbers that reach nobody.
MINISTER, EMBASSY, PRESS, OFFICE = "+442079460123", "+442079460456", "+442079460789", "+442079460321"


@dataclass
class World:
    tmp: Path
    settings: Settings
    store: Store
    fake: FakeTelnyx
    key: Ed25519PrivateKey

    def dispatcher(self, **overrides: Any) -> Dispatcher:
        settings = self.settings.model_copy(update=overrides)
        return Dispatcher(settings, self.store, make_channels(settings, self.store), worker_id="w")

    def rows(self, target: str | None = None) -> list[AttemptRow]:
        return [a for a in self.store.attempt_log() if a.channel == "fax" and target in (None, a.target_id)]

    def status(self) -> dict[str, str]:
        return {r.target_id: r.status for r in self.store.queue_counts() if r.channel == "fax"}


def write_action(tmp_path: Path, numbers: dict[str, str]) -> None:
    contract_world.write_action(tmp_path, contract_world.faxes(numbers))


def telnyx_env(public_url: str, fake_url: str, key: Ed25519PrivateKey) -> dict[str, str]:
    return {
        "DISPATCHER_FAX_PROVIDER": "telnyx",
        "DISPATCHER_PUBLIC_URL": public_url,
        "DISPATCHER_TELNYX_BASE_URL": fake_url,
        "DISPATCHER_TELNYX_API_KEY": API_KEY,
        "DISPATCHER_TELNYX_CONNECTION_ID": CONNECTION,
        "DISPATCHER_TELNYX_FROM": SENDER,
        "DISPATCHER_TELNYX_PUBLIC_KEY": public_key_b64(key),
    }


def settings_for(tmp_path: Path, env: dict[str, str], **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'd.db'}",
        "actions_dir": tmp_path / "actions",
        "templates_dir": tmp_path / "templates",
        "outbox": tmp_path / "outbox",
        "fax_outbox": tmp_path / "fax-outbox",
        **{k.removeprefix("DISPATCHER_").lower(): v for k, v in env.items()},
    }
    return Settings.model_validate(values | overrides)


@contextlib.contextmanager
def world(tmp_path: Path, numbers: dict[str, str] | None = None, **overrides: Any) -> Iterator[World]:
    write_action(tmp_path, numbers or {"minister": MINISTER})
    key = Ed25519PrivateKey.generate()
    fake = FakeTelnyx(API_KEY, CONNECTION, SENDER, key)
    port = free_port()
    with serve(fake.app) as fake_url:
        settings = settings_for(tmp_path, telnyx_env(f"http://127.0.0.1:{port}", fake_url, key), **overrides)
        store = open_store(settings.database_url)
        try:
            store.import_supporters(supporters(1), utcnow())
            with serve(app_for(settings, store), port):
                yield World(tmp_path, settings, store, fake, key)
        finally:
            store.close()


@contextlib.asynccontextmanager
async def running(w: World, **overrides: Any) -> Any:
    dispatcher = w.dispatcher(**overrides)
    task = asyncio.create_task(dispatcher.run_forever())
    try:
        yield dispatcher
    finally:
        dispatcher.stop()
        await task


def outcomes(rows: list[AttemptRow]) -> list[str]:
    return [r.outcome for r in rows]


def finals(w: World, fax_id: str) -> list[tuple[str, int]]:
    return [
        (s.event_type, s.status)
        for s in w.fake.sent(fax_id)
        if s.event_type in ("fax.delivered", "fax.failed")
    ]


# 1. delivered (what every provider does is in tests/contract/test_providers.py) ----------------
async def test_telnyx_fetches_our_pdf_and_reports_each_step_by_signed_webhook(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        async with running(w):  # polls only once a minute: the webhook must tell
            await until(lambda: w.status() == {"minister": "sent"}, "the delivered webhook")
        [fax] = w.fake.faxes_to(MINISTER)
        await until(lambda: len(w.fake.sent(fax.id)) == 4, "every webhook")
        _, sent = w.rows()
        public_url = w.settings.public_url
    assert sent.pages == fax.page_count == 1 and sent.duration == 25
    # Telnyx fetched a real PDF from our web app.
    assert fax.pdf is True and fax.media_url.startswith(f"{public_url}/media/fax/")
    assert fax.webhook_url == f"{public_url}/webhooks/fax/telnyx"
    assert [(s.event_type, s.status) for s in w.fake.sent(fax.id)] == [
        ("fax.queued", 200),
        ("fax.media.processed", 200),
        ("fax.sending.started", 200),
        ("fax.delivered", 200),
    ]


# 3. webhooks -------------------------------------------------------------------------------
async def test_duplicate_out_of_order_forged_and_stale_webhooks(tmp_path: Path) -> None:
    numbers = {"minister": MINISTER, "embassy": EMBASSY, "press": PRESS, "office": OFFICE}
    with world(tmp_path, numbers) as w:
        w.fake.plan(MINISTER, Plan(twice=True))
        w.fake.plan(EMBASSY, Plan(reorder=True))
        w.fake.plan(PRESS, Plan(forged=True))
        w.fake.plan(OFFICE, Plan(stale=True))
        async with running(w):  # polls only once a minute: what changes, webhooks changed
            await until(lambda: len(w.fake.faxes) == 4, "four faxes")
            fax = {n: w.fake.faxes_to(n)[0].id for n in (MINISTER, EMBASSY, PRESS, OFFICE)}
            await until(lambda: all(len(w.fake.sent(f)) >= 4 for f in fax.values()), "every webhook")
            await until(lambda: len(w.fake.sent(fax[MINISTER])) == 5, "the duplicate")
            before = w.status()
        sent_rows = Counter(r.target_id for r in w.rows() if r.outcome == "sent")
        # What the forged and stale webhooks could not say, polling finds out.
        await w.dispatcher().run_once()
        after, polled = w.status(), {r.target_id: r.worker for r in w.rows() if r.outcome == "sent"}
        embassy_events = [s.event_type for s in w.fake.sent(fax[EMBASSY])]
    assert finals(w, fax[MINISTER]) == [("fax.delivered", 200), ("fax.delivered", 409)]
    assert embassy_events[-2:] == ["fax.delivered", "fax.sending.started"]
    assert {s.status for s in w.fake.sent(fax[EMBASSY])} == {200}
    assert finals(w, fax[PRESS]) == [("fax.delivered", 403)]
    assert finals(w, fax[OFFICE]) == [("fax.delivered", 403)]
    assert before == {"minister": "sent", "embassy": "sent", "press": "submitted", "office": "submitted"}
    assert sent_rows == {"minister": 1, "embassy": 1}
    assert set(after.values()) == {"sent"}
    assert polled["press"] == polled["office"] == "poll:w"


def test_webhooks_that_telnyx_did_not_send_are_refused(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        url = f"{w.settings.public_url}/webhooks/fax/telnyx"
        now = int(time.time())

        def event(event_id: str, event_type: str = "fax.queued", **payload: Any) -> bytes:
            data = {"id": event_id, "event_type": event_type, "occurred_at": "2030-01-01T00:00:00Z"}
            return json.dumps({"data": data | {"payload": {"fax_id": "f1", **payload}}}).encode()

        def post(body: bytes, headers: dict[str, str]) -> int:
            return httpx.post(url, content=body, headers=headers).status_code

        body = event("e1")
        other = Ed25519PrivateKey.generate()
        signed = signed_headers(w.key, body, now)
        assert post(body, {"content-type": "application/json"}) == 403  # unsigned
        assert post(body, signed_headers(other, body, now)) == 403  # another key
        assert post(body, signed | {"telnyx-signature-ed25519": "not base64!"}) == 403
        assert post(body, signed | {"telnyx-timestamp": str(now + 1)}) == 403  # not what was signed
        assert post(body + b" ", signed) == 403  # a changed body
        assert post(body, signed_headers(w.key, body, now - 301)) == 403  # stale
        assert post(body, signed_headers(w.key, body, now + 120)) == 403  # from the future
        assert post(body, signed_headers(w.key, body) | {"telnyx-timestamp": "12ab"}) == 403
        assert post(b"{not json", signed_headers(w.key, b"{not json", now)) == 400
        assert post(b'{"data": {"id": "e2"}}', signed_headers(w.key, b'{"data": {"id": "e2"}}', now)) == 400
        assert post(body, signed) == 200  # news on the way: nothing to apply
        final = event("e3", "fax.delivered", status="delivered", page_count=1)
        assert post(final, signed_headers(w.key, final, now)) == 200  # kept until its job is known
        assert post(final, signed_headers(w.key, final, now + 1)) == 409  # a replay, freshly signed


# 6. cancel ---------------------------------------------------------------------------------
async def test_closing_an_action_withdraws_its_queued_fax_and_cancels_the_letter(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        w.fake.plan(MINISTER, Plan(hold=True))
        await w.dispatcher().run_once()
        await until(lambda: w.fake.faxes_to(MINISTER)[0].status == "media.processed", "the queued fax")
        controls.close(w.store, load_actions(w.settings.actions_dir).actions["a"], "staff", utcnow())
        await w.dispatcher().run_once()  # its sweep withdraws the fax, then cancels the letter
        closed = w.status()
    assert closed == {"minister": "cancelled"} and len(w.fake.faxes_to(MINISTER)) == 1
    assert w.fake.cancels == [(w.fake.faxes_to(MINISTER)[0].id, 202)]
    # What Telnyx reports for a withdrawn fax (the contract suite checks the pause and resume).
    assert [(f.status, f.failure_reason) for f in w.fake.faxes_to(MINISTER)] == [("failed", "canceled")]


async def test_the_adapter_against_the_fake_directly(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        provider = TelnyxProvider.from_settings(
            w.settings, w.store.instance_secret(), media_host(w.settings, w.store)
        )
        started = utcnow() - dt.timedelta(seconds=1)
        jobs = [await provider.submit(b"%PDF-1.4 fake", MINISTER, f"ref{i}") for i in range(5)]
        provider.page_size = 2  # three pages of faxes to look through
        found = [await provider.find(f"ref{i}", started) for i in range(5)]
        by_number = await provider.find("ref3", started, to=MINISTER)
        elsewhere = await provider.find("ref3", started, to=EMBASSY)
        later = await provider.find("ref0", utcnow() + dt.timedelta(minutes=1))
        await until(lambda: all(f.status == "delivered" for f in w.fake.faxes.values()), "deliveries")
        polled = await provider.status(jobs[0])
        cancelled = await provider.cancel(jobs[0])
        unknown = await provider.cancel("00000000-0000-0000-0000-000000000000")
        missing = await provider.status("00000000-0000-0000-0000-000000000000")
        await provider.close()
        wrong = TelnyxProvider.from_settings(
            w.settings.model_copy(update={"telnyx_api_key": SecretStr("wrong")}),
            b"s",
            media_host(w.settings, w.store),
        )
        with pytest.raises(ProviderError) as refused:
            await wrong.submit(b"%PDF-1.4", MINISTER, "ref9")
        await wrong.close()
    assert found == jobs and by_number == jobs[3] and elsewhere is None and later is None
    assert polled is not None and polled.delivered and polled.job_id == jobs[0]
    assert cancelled is False and unknown is False and missing is None
    assert refused.value.failure is Failure.ACCOUNT and refused.value.code == 401
    assert "wrong" not in str(refused.value)


def test_settings_it_cannot_work_without(tmp_path: Path) -> None:
    key = public_key_b64(Ed25519PrivateKey.generate())
    env = telnyx_env("https://letters.example.org", "https://api.telnyx.com/v2", Ed25519PrivateKey.generate())
    base = settings_for(tmp_path, env).model_copy(update={"telnyx_public_key": key})
    TelnyxProvider.from_settings(base, b"s", None)  # the web app: verifies webhooks, sends nothing
    with pytest.raises(ValueError, match="DISPATCHER_PUBLIC_URL"):
        TelnyxProvider.from_settings(base.model_copy(update={"public_url": None}), b"s", None)
    with pytest.raises(ValueError, match="DISPATCHER_TELNYX_PUBLIC_KEY"):
        TelnyxProvider.from_settings(base.model_copy(update={"telnyx_public_key": "abc"}), b"s", None)
    with pytest.raises(ValueError, match="https"):
        plain = base.model_copy(update={"telnyx_base_url": "http://api.telnyx.com/v2"})
        TelnyxProvider.from_settings(plain, b"s", None)
    with pytest.raises(ValueError) as missing:
        TelnyxProvider.from_settings(base.model_copy(update={"telnyx_api_key": None}), b"s", None)
    assert "DISPATCHER_TELNYX_API_KEY" in str(missing.value) and API_KEY not in str(missing.value)


def test_every_documented_failure_reason_has_its_word() -> None:
    expected = {
        "user_busy": Failure.BUSY,
        "receiver_no_answer": Failure.NO_ANSWER,
        "receiver_no_response": Failure.NO_ANSWER,
        "fax_initial_communication_timeout": Failure.NOT_A_FAX,
        "receiver_unallocated_number": Failure.BAD_NUMBER,
        "receiver_invalid_number_format": Failure.BAD_NUMBER,
        "destination_invalid": Failure.BAD_NUMBER,
        "receiver_decline": Failure.BLOCKED,
        "destination_not_in_countries_whitelist": Failure.BLOCKED,
        "file_size_limit_exceeded": Failure.DOCUMENT,
        "page_count_limit_exceeded": Failure.DOCUMENT,
        "file_format_invalid": Failure.DOCUMENT,
        "file_download_failed": Failure.ACCOUNT,
        "account_disabled": Failure.ACCOUNT,
        "outbound_profile_daily_spend_limit_exceeded": Failure.ACCOUNT,
        "user_channel_limit_exceeded": Failure.RATE_LIMITED,
        "service_unavailable": Failure.PROVIDER,
        "receiver_call_dropped": Failure.PROVIDER,
        "fax_signaling_error": Failure.PROVIDER,
        "something_new": Failure.PROVIDER,
        "": Failure.PROVIDER,
    }
    assert {reason: failure_for(reason) for reason in expected} == expected
    assert not any(failure_for(r).retryable for r in ("receiver_decline", "file_format_invalid"))


# 4. a crash between Telnyx's acceptance and our commit ---------------------------------------
@dataclass
class Processes:
    """The real ``dispatcher`` command against the fake, our web app in this process."""

    store: Store
    env: dict[str, str]
    out: BinaryIO
    exe: str = field(default_factory=dispatcher_executable)

    def kill_once(self, until: Callable[[], bool], what: str) -> None:
        """``dispatcher run`` as worker w1, killed with SIGKILL once ``until`` holds."""
        proc = subprocess.Popen(
            [self.exe, "run", "--worker-id", "w1"], env=self.env, stdout=self.out, stderr=self.out
        )
        try:
            _wait(until, 30, what)
        finally:
            stop(proc, 9)

    def run_once(self, timeout: float) -> None:
        """The restart: the same worker id, so its leases are taken back at once."""
        again = [self.exe, "run", "--once", "--worker-id", "w1"]
        subprocess.run(again, env=self.env, stdout=self.out, stderr=self.out, timeout=timeout, check=True)


@contextlib.contextmanager
def processes(
    tmp_path: Path, fake: FakeTelnyx, key: Ed25519PrivateKey, people: int, **env: str
) -> Iterator[Processes]:
    write_action(tmp_path, {"minister": MINISTER})
    port = free_port()
    with serve(fake.app) as fake_url:
        provider_env = telnyx_env(f"http://127.0.0.1:{port}", fake_url, key)
        settings = settings_for(tmp_path, provider_env)
        store = open_store(settings.database_url)
        store.import_supporters(supporters(people), utcnow())
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
        full_env = inherited | cli_env(tmp_path, tmp_path, **env, **provider_env)
        try:
            with (tmp_path / "run.log").open("wb") as out, serve(app_for(settings, store), port):
                yield Processes(store, full_env, out)
        finally:
            store.close()


def finals_of(fake: FakeTelnyx, fax_id: str) -> list[tuple[str, int]]:
    return [(s.event_type, s.status) for s in fake.sent(fax_id) if s.event_type.startswith("fax.deliv")]


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def test_a_kill_while_faxes_are_submitted_loses_nothing_and_faxes_nothing_twice(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    fake = FakeTelnyx(API_KEY, CONNECTION, SENDER, key, step=1.0)  # a slow line: seconds per fax
    fake.plan(MINISTER, Plan(), Plan(webhooks=False))  # the second one's webhooks are lost too
    with processes(tmp_path, fake, key, 2) as run:
        # Killed while a fax is submitted: the provider dials on; its webhook reaches the web app.
        run.kill_once(
            lambda: any(r.status == "submitted" for r in run.store.queue_counts()), "a fax submitted"
        )
        [first] = fake.faxes_to(MINISTER)
        _wait(lambda: ("fax.delivered", 200) in finals_of(fake, first.id), 20, "its webhook")
        run.run_once(120)
        # --once does not wait for the provider: the next run asks it (no webhook came).
        _wait(lambda: all(f.status == "delivered" for f in fake.faxes_to(MINISTER)), 20, "both faxes")
        run.run_once(120)
        status = Counter(r.status for r in run.store.queue_counts() for _ in range(r.count))
        rows = [a for a in run.store.attempt_log() if a.channel == "fax"]
    faxes = fake.faxes_to(MINISTER)
    assert len(faxes) == 2 and len({f.reference for f in faxes}) == 2  # one fax per letter
    assert status == {"sent": 2}
    assert Counter(outcomes(rows)) == {"submitted": 2, "sent": 2}  # the second by polling


async def test_a_fax_that_fails_for_good_falls_back_to_email_if_the_target_asks(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        path = tmp_path / "actions" / "a.yaml"
        action = yaml.safe_load(path.read_text())
        action["targets"][0] |= {"email": "minister@example.org", "fallback": "email"}
        path.write_text(yaml.safe_dump(action))
        w.fake.plan(MINISTER, Plan(failure="fax_initial_communication_timeout"))
        await w.dispatcher().run_once()
        await until(lambda: w.status() == {"minister": "failed"}, "the fax to fail")
        await w.dispatcher().run_once()  # the letter by email, as the fallback
        log = list(w.store.attempt_log())
    mails = list(mailbox.Maildir(str(tmp_path / "outbox"), create=False))
    assert len(mails) == 1 and "minister@example.org" in str(mails[0]["To"])
    assert [(r.channel, r.outcome) for r in log] == [
        ("fax", "submitted"),
        ("fax", "failed"),
        ("email", "sent"),
    ]
    assert log[1].detail.endswith("; falling back to email")
