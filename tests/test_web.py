"""The web app as providers meet it: a real uvicorn process, webhook refusals, fax media under
signed expiring URLs; and the settings and retry rules the fax providers share."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from dispatcher.providers.http import require_tls
from dispatcher.providers.media import MEDIA_PATH, MediaHost, media_reference
from dispatcher.sending.backoff import fax_backoff
from dispatcher.settings import Settings, load_settings
from dispatcher.store import Store
from dispatcher.web import app_for
from tests.asgi_server import free_port, serve
from tests.conftest import ROOT, cli_env
from tests.web_client import PASSWORD, csrf_of

PDF = b"%PDF-1.4\n% a letter\n"


def wait_until_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            if httpx.get(url + "/healthz").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("dispatcher web did not start")


def test_dispatcher_web_serves_and_refuses_what_no_provider_sent(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, **cli_env(tmp_path, DISPATCHER_PUBLIC_URL=f"http://127.0.0.1:{port}")}
    web = ROOT / ".venv" / "bin" / "dispatcher"
    proc = subprocess.Popen([str(web), "web", "--port", str(port)], env=env, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, proc)
        # The file provider dials nothing and sends no webhooks; others are not configured.
        assert httpx.post(url + "/webhooks/fax/file", content=b"{}").status_code == 404
        assert httpx.post(url + "/webhooks/fax/telnyx", content=b"{}").status_code == 404
        assert httpx.get(url + "/webhooks/fax/file").status_code == 405
        too_big = httpx.post(url + "/webhooks/fax/file", content=b"x" * (9 * 1024 * 1024))
        assert too_big.status_code == 413
        assert httpx.get(url + MEDIA_PATH + "forged.pdf").status_code == 404
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert b"refused" in err  # every refusal leaves a log line


async def test_fax_media_is_served_under_a_signed_url_only(tmp_path: Path, store: Store) -> None:
    port = free_port()
    settings = Settings.model_validate({"public_url": f"http://127.0.0.1:{port}"})
    secret = store.instance_secret()

    async def put(reference: str, pdf: bytes) -> None:
        await asyncio.to_thread(store.put_media, reference, pdf, dt.datetime.now(dt.UTC))

    url = await MediaHost(f"http://127.0.0.1:{port}", secret, put).publish("d7-0123abcd", PDF)
    with serve(app_for(settings, store), port):
        async with httpx.AsyncClient() as client:
            got = await client.get(url)
            assert got.status_code == 200 and got.content == PDF
            assert got.headers["content-type"] == "application/pdf"
            assert got.headers["cache-control"] == "no-store"
            token = url.rsplit("/", 1)[1].removesuffix(".pdf")
            # Inside the signature: its last base64 character also carries padding bits.
            tampered = token[:-5] + ("A" if token[-5] != "A" else "B") + token[-4:]
            assert (await client.get(url.replace(token, tampered))).status_code == 404
            # A token for a reference that was never published finds nothing either.
            other = URLSafeTimedSerializer(secret, salt="fax-media").dumps("d8-ffff")
            assert (await client.get(f"http://127.0.0.1:{port}{MEDIA_PATH}{other}.pdf")).status_code == 404


class _Yesterday(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(time.time()) - 2 * 86400


def test_a_media_token_expires() -> None:
    secret = b"s" * 16
    old = URLSafeTimedSerializer(secret, salt="fax-media", signer=_Yesterday).dumps("d1-ab")
    fresh = URLSafeTimedSerializer(secret, salt="fax-media").dumps("d1-ab")
    assert media_reference(secret, fresh) == "d1-ab"
    assert media_reference(secret, old) is None
    assert media_reference(b"t" * 16, fresh) is None


def test_fax_retries_back_off_from_twenty_minutes_bounded_and_jittered() -> None:
    backoff = fax_backoff(Settings())
    now = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
    waits = [[backoff.seconds(n) for _ in range(50)] for n in range(1, 6)]
    assert all(1200 <= w <= 1500 for w in waits[0]) and len(set(waits[0])) > 1
    assert all(1200 * 1.9 <= w <= 1200 * 1.9 + 300 for w in waits[1])
    assert all(w <= 4 * 3600 + 300 for ws in waits for w in ws)
    assert backoff.after(5, now) is not None and backoff.after(6, now) is None  # six attempts


def test_provider_secrets_come_from_the_environment_only(tmp_path: Path) -> None:
    toml = tmp_path / "dispatcher.toml"
    toml.write_text('twilio_auth_token = "tok-in-a-file"\n')
    with pytest.raises(ValueError, match="DISPATCHER_TWILIO_AUTH_TOKEN") as caught:
        load_settings({}, toml)
    assert "tok-in-a-file" not in str(caught.value)
    settings = load_settings({"DISPATCHER_TELNYX_API_KEY": "KEY0123secret"}, tmp_path / "none.toml")
    assert "KEY0123secret" not in repr(settings) and "KEY0123secret" not in str(settings.model_dump())


def test_credentials_never_travel_over_plain_http_except_on_this_machine() -> None:
    assert require_tls("https://api.telnyx.com/v2/", "X") == "https://api.telnyx.com/v2"
    assert require_tls("http://127.0.0.1:9000/v2", "X") == "http://127.0.0.1:9000/v2"
    with pytest.raises(ValueError, match="https"):
        require_tls("http://api.telnyx.com/v2", "DISPATCHER_TELNYX_BASE_URL")


def test_a_provider_without_its_settings_names_what_is_missing(tmp_path: Path) -> None:
    env = {
        **os.environ,
        **cli_env(tmp_path, DISPATCHER_FAX_PROVIDER="twilio", DISPATCHER_TWILIO_AUTH_TOKEN="tok-9"),
    }
    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "dispatcher"), "run", "--once"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert b"DISPATCHER_TWILIO_ACCOUNT_SID" in done.stderr and b"DISPATCHER_PUBLIC_URL" in done.stderr
    assert b"tok-9" not in done.stderr + done.stdout


@pytest.mark.parametrize(("trusted", "seen"), [("", "127.0.0.1"), ("127.0.0.1", "203.0.113.5")])
def test_forwarded_addresses_are_believed_only_from_trusted_proxies(
    tmp_path: Path, trusted: str, seen: str
) -> None:
    port = free_port()
    env = {**os.environ, **cli_env(tmp_path, DISPATCHER_TRUSTED_PROXIES=trusted)}
    exe = str(ROOT / ".venv" / "bin" / "dispatcher")
    subprocess.run(
        [exe, "users", "add", "ada", "--role", "viewer"], env=env, input=PASSWORD.encode(), check=True
    )
    proc = subprocess.Popen([exe, "web", "--port", str(port)], env=env, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, proc)
        with httpx.Client(base_url=url, headers={"X-Forwarded-For": "203.0.113.5"}) as web:
            form = {"name": "ada", "password": PASSWORD, "csrf": csrf_of(web.get("/login").text)}
            assert web.post("/login", data=form).status_code == 303
            assert f"<td>{seen}</td>" in web.get("/audit").text  # the login, from where
    finally:
        proc.terminate()
        proc.wait(timeout=20)
