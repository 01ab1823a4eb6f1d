"""smtps:// and smtp+starttls:// with AUTH, against a real aiosmtpd server using a test CA."""

from __future__ import annotations

import base64
import contextlib
import logging
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from click.testing import CliRunner

from dispatcher.channels import SendError
from dispatcher.channels.email import OutgoingMail, SmtpTransport
from dispatcher.cli import main
from dispatcher.store import open_store
from tests.conftest import ROOT, cli_env
from tests.support.processes import free_port

# aiosmtpd warns when AUTH may go without STARTTLS; our smtps server is TLS from the first byte.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

USER, PASSWORD = "org", "s3cr3t p@ss"


class Keep:
    def __init__(self, password: str = PASSWORD, echo: bool = False) -> None:
        self.password = password
        self.echo = echo  # a careless server that repeats what it was sent in its refusal
        self.received: list[tuple[str, list[str], bytes, Any]] = []
        self.logins: list[bytes] = []

    def authenticate(
        self, server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login == USER.encode()
            and data.password == self.password.encode()
        )
        if ok:
            self.logins.append(data.login)
        if not ok and self.echo and isinstance(data, LoginPassword):
            sent = data.password.decode()
            plain = base64.b64encode(b"\0" + data.login + b"\0" + data.password).decode()
            return AuthResult(success=False, handled=False, message=f"535 5.7.8 refused {sent} ({plain})")
        return AuthResult(success=ok, handled=False)

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        assert envelope.mail_from is not None and envelope.content is not None
        content = envelope.content if isinstance(envelope.content, bytes) else envelope.content.encode()
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), content, session.auth_data))
        return "250 kept"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[trustme.CA, Path]]:
    authority = trustme.CA()
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    yield authority, path


def serve(
    ca: trustme.CA, implicit: bool, password: str = PASSWORD, echo: bool = False, port: int | None = None
) -> tuple[Controller, Keep]:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_ctx)
    handler = Keep(password, echo)
    # aiosmtpd does not count implicit TLS as TLS for AUTH; the socket is TLS all the same.
    kwargs: dict[str, Any] = {
        "authenticator": handler.authenticate,
        "auth_required": True,
        "auth_require_tls": not implicit,
    }
    if implicit:
        kwargs["ssl_context"] = server_ctx
    else:
        kwargs["tls_context"] = server_ctx
        kwargs["require_starttls"] = True
    controller = Controller(
        handler, hostname="127.0.0.1", port=port or free_port(), server_hostname="localhost", **kwargs
    )
    controller.start()
    return controller, handler


@contextlib.contextmanager
def served(
    ca: trustme.CA, implicit: bool, password: str = PASSWORD, echo: bool = False
) -> Iterator[tuple[Controller, Keep]]:
    """``serve`` for the length of a with block: the server is stopped however the block ends."""
    controller, handler = serve(ca, implicit, password, echo)
    try:
        yield controller, handler
    finally:
        controller.stop()


MAIL = OutgoingMail("letters@example.org", ("to@example.org",), b"Subject: hi\r\n\r\nbody\r\n")


@pytest.mark.parametrize("scheme", ["smtps", "smtp+starttls"])
async def test_tls_and_auth(ca: tuple[trustme.CA, Path], scheme: str) -> None:
    authority, cafile = ca
    with served(authority, implicit=scheme == "smtps") as (controller, handler):
        secret = quote(PASSWORD, safe="")
        url = f"{scheme}://{USER}:{secret}@localhost:{controller.port}"
        transport = SmtpTransport(url, pool_size=2, timeout=10, cafile=cafile)
        replies = [await transport.send(MAIL) for _ in range(3)]
        await transport.close()
        assert all(r.code == 250 for r in replies)
        assert [(m, r) for m, r, _, _ in handler.received] == [
            ("letters@example.org", ["to@example.org"])
        ] * 3
        assert handler.logins == [USER.encode()]  # three letters, one connection, one login


async def test_untrusted_certificate_is_a_transient_failure(ca: tuple[trustme.CA, Path]) -> None:
    authority, _ = ca
    with served(authority, implicit=True) as (controller, handler):
        transport = SmtpTransport(f"smtps://{USER}:x@localhost:{controller.port}", pool_size=1, timeout=5)
        with pytest.raises(SendError) as caught:
            await transport.send(MAIL)
        assert caught.value.transient and "certificate" in caught.value.detail.lower()
        assert handler.received == []


async def test_wrong_password_is_permanent(ca: tuple[trustme.CA, Path]) -> None:
    authority, cafile = ca
    with served(authority, implicit=False) as (controller, handler):
        url = f"smtp+starttls://{USER}:wrong@localhost:{controller.port}"
        transport = SmtpTransport(url, pool_size=1, timeout=5, cafile=cafile)
        with pytest.raises(SendError) as caught:
            await transport.send(MAIL)
        assert caught.value.code == 535 and not caught.value.transient
        assert handler.received == []


# The password: unencoded reserved characters work, and it is shown nowhere ---------------------
RAW_PASSWORD = "p@ss/w#rd?x:y"  # unencoded: '@', '/', '#', '?' and ':' each broke urlsplit
WRONG = "wr0ng/p@ss#Zq9"


def secret_forms(password: str) -> list[str]:
    """The password as it could leak: itself, and as AUTH PLAIN or AUTH LOGIN send it."""
    plain = base64.b64encode(f"\0{USER}\0{password}".encode()).decode()
    return [password, plain, base64.b64encode(password.encode()).decode()]


def client_records(caplog: pytest.LogCaptureFixture) -> str:
    """Every log record of the client side; aiosmtpd's own ("mail.log") is the server's business."""
    return "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''}"
        for r in caplog.records
        if not r.name.startswith("mail.log")
    )


@pytest.mark.parametrize("scheme", ["smtps", "smtp+starttls"])
async def test_reserved_characters_in_the_password_need_no_encoding(
    ca: tuple[trustme.CA, Path], scheme: str
) -> None:
    authority, cafile = ca
    with served(authority, implicit=scheme == "smtps", password=RAW_PASSWORD) as (controller, handler):
        url = f"{scheme}://{USER}:{RAW_PASSWORD}@localhost:{controller.port}"
        transport = SmtpTransport(url, pool_size=1, timeout=10, cafile=cafile)
        assert transport.describe() == f"{scheme}://localhost:{controller.port}"
        assert (await transport.send(MAIL)).code == 250
        await transport.close()
        assert handler.logins == [USER.encode()]


async def test_a_refused_login_logs_and_raises_no_password(
    ca: tuple[trustme.CA, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    authority, cafile = ca
    with served(authority, implicit=False) as (controller, handler):
        url = f"smtp+starttls://{USER}:{WRONG}@localhost:{controller.port}"
        transport = SmtpTransport(url, pool_size=1, timeout=5, cafile=cafile)
        with pytest.raises(SendError) as caught:
            await transport.send(MAIL)
    assert caught.value.code == 535 and handler.logins == []
    errors = [caught.value, caught.value.__cause__, caught.value.__context__]
    shown = [str(e) for e in errors] + [repr(e) for e in errors] + [repr(transport.__dict__)]
    shown += [transport.describe(), client_records(caplog)]
    assert not [s for s in shown for form in secret_forms(WRONG) if form in s]


def test_a_refused_login_leaves_no_password_in_the_send_log_or_output(
    ca: tuple[trustme.CA, Path], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    authority, cafile = ca
    database = f"sqlite:///{tmp_path / 'd.db'}"
    runner = CliRunner()
    with served(authority, implicit=True) as (controller, _):
        env = cli_env(
            tmp_path,
            DISPATCHER_SMTP_URL=f"smtps://{USER}:{WRONG}@localhost:{controller.port}",
            DISPATCHER_SMTP_CAFILE=str(cafile),
            DISPATCHER_SMTP_TIMEOUT="5",
        )
        imported = runner.invoke(
            main, ["supporters", "import", str(ROOT / "config/demo-supporters.csv")], env=env
        )
        assert imported.exit_code == 0, imported.output
        run = runner.invoke(main, ["-v", "run", "--once"], env=env)
    store = open_store(database)
    try:
        details = [(a.outcome, a.code, a.detail) for a in store.attempt_log()]
    finally:
        store.close()
    assert details and all(code == 535 for _, code, _ in details), details
    shown = [run.output, repr(run.exception), client_records(caplog), *(d for _, _, d in details)]
    assert not [s for s in shown for form in secret_forms(WRONG) if form in s]


async def test_a_server_that_echoes_the_credentials_gets_them_scrubbed(ca: tuple[trustme.CA, Path]) -> None:
    authority, cafile = ca
    with served(authority, implicit=True, echo=True) as (controller, _):
        url = f"smtps://{USER}:{WRONG}@localhost:{controller.port}"
        transport = SmtpTransport(url, pool_size=1, timeout=5, cafile=cafile)
        with pytest.raises(SendError) as caught:
            await transport.send(MAIL)
    assert caught.value.code == 535 and "refused ***" in caught.value.detail
    assert not [form for form in secret_forms(WRONG) if form in caught.value.detail]
