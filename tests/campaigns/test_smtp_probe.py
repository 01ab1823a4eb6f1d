"""The SMTP circuit's probe says what is wrong: once, again when it changes, and when the server
is back; a configuration error (login refused, untrusted certificate, no STARTTLS) plainly, with
no password in it. Real aiosmtpd servers on 127.0.0.1 with a test CA."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
import trustme
from aiosmtpd.controller import Controller

from dispatcher.channels import SendError
from dispatcher.channels.email import PROBE_FIRST, SmtpTransport
from tests.campaigns import test_smtp_tls
from tests.campaigns.test_smtp_tls import MAIL, USER, WRONG, Keep, client_records, secret_forms, serve
from tests.support.processes import free_port

ca = test_smtp_tls.ca  # the test CA, as a fixture here too

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


def channel_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "dispatcher"]


async def fail_then_probe(transport: SmtpTransport, probes: float = 3.0) -> None:
    """One letter finds the server unusable; then the probe tries for ``probes`` seconds."""
    with pytest.raises(SendError):
        await transport.send(MAIL)
    await asyncio.sleep(probes)
    assert transport.ready_in() > 0, "the circuit closed on a server that cannot be used"


async def probed(
    transport: SmtpTransport, controller: Controller, caplog: pytest.LogCaptureFixture, probes: float = 3.0
) -> list[logging.LogRecord]:
    """``fail_then_probe`` against ``controller``, both closed after; the channel's log records."""
    try:
        await fail_then_probe(transport, probes)
    finally:
        await transport.close()
        controller.stop()
    return channel_records(caplog)


async def test_a_refused_login_is_logged_once_as_a_configuration_error(
    ca: tuple[trustme.CA, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    authority, cafile = ca
    controller, _ = serve(authority, implicit=False)
    url = f"smtp+starttls://{USER}:{WRONG}@localhost:{controller.port}"
    transport = SmtpTransport(url, pool_size=1, timeout=5, cafile=cafile)
    records = await probed(transport, controller, caplog)
    assert [r.levelno for r in records] == [logging.ERROR], [r.getMessage() for r in records]
    assert "email channel down: the server refused the login (535" in records[0].getMessage()
    assert transport.trouble is not None and transport.trouble.startswith("the server refused the login")
    assert not [form for form in secret_forms(WRONG) if form in client_records(caplog)]


async def test_an_untrusted_certificate_is_logged_as_a_configuration_error(
    ca: tuple[trustme.CA, Path], caplog: pytest.LogCaptureFixture
) -> None:
    authority, _ = ca
    controller, _ = serve(authority, implicit=True)
    transport = SmtpTransport(f"smtps://{USER}:x@localhost:{controller.port}", pool_size=1, timeout=5)
    records = await probed(transport, controller, caplog, probes=1.0)
    assert [r.levelno for r in records] == [logging.ERROR]
    assert "email channel down: the server's certificate is not trusted" in records[0].getMessage()


async def test_a_server_without_starttls_is_logged_as_a_configuration_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    controller = Controller(Keep(), hostname="127.0.0.1", port=free_port(), server_hostname="localhost")
    controller.start()
    transport = SmtpTransport(f"smtp+starttls://{USER}:x@localhost:{controller.port}", pool_size=1, timeout=5)
    records = await probed(transport, controller, caplog, probes=1.0)
    assert [r.levelno for r in records] == [logging.ERROR]
    assert "email channel down: the server offers no STARTTLS" in records[0].getMessage()


@pytest.mark.slow
async def test_the_probe_logs_each_change_of_error_and_the_return(
    ca: tuple[trustme.CA, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    authority, cafile = ca
    port = free_port()  # nothing listens there yet
    url = f"smtp+starttls://{USER}:{WRONG}@localhost:{port}"
    transport = SmtpTransport(url, pool_size=1, timeout=5, cafile=cafile)
    controllers: list[Controller] = []
    try:
        await fail_then_probe(transport, probes=2.0)  # refused, over and over: logged once
        controllers.append(serve(authority, implicit=False, port=port)[0])
        await asyncio.sleep(6.0)  # the login is refused now: logged once
        controllers.pop().stop()
        controllers.append(serve(authority, implicit=False, password=WRONG, port=port)[0])
        for _ in range(100):
            if transport.ready_in() == 0:
                break
            await asyncio.sleep(PROBE_FIRST / 5)
    finally:
        await transport.close()
        for controller in controllers:
            controller.stop()
    messages = [(r.levelno, r.getMessage()) for r in channel_records(caplog)]
    assert [level for level, _ in messages] == [logging.WARNING, logging.ERROR, logging.INFO], messages
    assert "email channel down: SMTPConnectError" in messages[0][1]
    assert "the server refused the login" in messages[1][1]
    assert "email channel up again" in messages[2][1]
    assert transport.trouble is None
