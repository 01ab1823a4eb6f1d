"""SMTP as the transport: a pool of persistent connections, a circuit that a probe closes, and
the MAIL/RCPT/DATA transaction written out (what ``SMTP.sendmail`` does, minus its costs)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
import re
import ssl
import time
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import aiosmtplib
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential, wait_random

from dispatcher.channels.base import Reply, SendError, Unavailable
from dispatcher.channels.email.transport import MailTransport, OutgoingMail
from dispatcher.settings import SMTP_DEFAULT_PORTS, SmtpUrl, parse_smtp_url

log = logging.getLogger("dispatcher")

PROBE_FIRST = 0.5  # seconds from a failed connect to the first probe of the server
PROBE_MAX = 5.0  # seconds between probes of a server that stays down

_CONNECTION_ERRORS = (
    aiosmtplib.SMTPServerDisconnected,
    aiosmtplib.SMTPConnectError,
    aiosmtplib.SMTPTimeoutError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)


_PATH_SAFE = re.compile(r"^[!#-;=?-~]+@[!#-;=?-~]+$")  # printable ASCII except space, '"', '<', '>'


@lru_cache(maxsize=65536)
def smtp_path(address: str) -> bytes:
    """``<address>`` for MAIL FROM / RCPT TO; refuses anything that could break the command line."""
    if not _PATH_SAFE.match(address):
        raise ValueError(f"address {address!r} cannot be sent on an SMTP command line")
    return b"<" + address.encode("ascii") + b">"


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what caused it, as far as the chain goes."""
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    return chain


class SmtpTransport(MailTransport):
    """A pool of persistent aiosmtplib connections; each carries many messages in turn."""

    DEFAULT_PORTS: ClassVar[dict[str, int]] = SMTP_DEFAULT_PORTS

    def __init__(
        self, url: str | SmtpUrl, pool_size: int = 8, timeout: float = 30.0, cafile: Path | None = None
    ) -> None:
        # Parsed by the one parser settings use too (whose errors never repeat the URL). Whether
        # credentials may go over plain smtp:// is the settings' decision, not the transport's.
        self.url = url if isinstance(url, SmtpUrl) else parse_smtp_url(url)
        self.scheme = self.url.scheme
        self.host = self.url.host
        self.port = self.url.port
        self.username = self.url.username
        self.timeout = timeout
        self.tls_context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
        self.pool_size = pool_size
        # A fair semaphore (first come, first served) guards the idle connections. An
        # asyncio.Queue is not fair: a sender that puts its connection back and asks again at once
        # overtakes the senders already waiting, who may then wait for the whole campaign while
        # the leases on the letters they hold run out, and those letters are sent twice.
        self._slots = asyncio.Semaphore(pool_size)
        self._idle: list[aiosmtplib.SMTP] = []
        # Circuit breaker: after a failed connect the server counts as down and no letter is
        # tried on it, so an outage costs one attempt per connection, not one per letter. A bare
        # connection probes it (PROBE_FIRST, doubling to PROBE_MAX) and the first that gets
        # through closes the circuit: sending resumes within PROBE_MAX of the server's return,
        # and no letter spends an attempt as a probe.
        self._probe: asyncio.Task[None] | None = None
        self._next_probe = 0.0
        self.trouble: str | None = None  # why the circuit is open, fit for logs (no secret)
        self._draining = False

    def ready_in(self) -> float:
        if self._probe is None:
            return 0.0
        return max(0.01, self._next_probe - time.monotonic())  # not 0 while the probe connects

    def _open_circuit(self, exc: BaseException) -> None:
        self._report(exc)
        if self._probe is None:
            self._next_probe = time.monotonic() + PROBE_FIRST
            self._probe = asyncio.create_task(self._probe_until_up())

    def _report(self, exc: BaseException) -> None:
        """Log why the server cannot be used: the first time, and whenever the reason changes
        (a probe every few seconds must not repeat itself for the whole outage)."""
        trouble, configuration = self._diagnose(exc)
        if trouble == self.trouble:
            return
        self.trouble = trouble
        where = self.describe()
        if configuration:
            log.error("email channel down: %s at %s; fix the settings; letters wait", trouble, where)
        else:
            log.warning("email channel down: %s at %s; letters wait", trouble, where)

    def _diagnose(self, exc: BaseException) -> tuple[str, bool]:
        """What is wrong, for an operator, and whether it is the configuration (which waiting
        will not cure); scrubbed, as a server may echo what AUTH sent."""
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
            return self._scrub(f"the server refused the login ({exc.code} {exc.message})"), True
        for cause in _chain(exc):
            if isinstance(cause, ssl.SSLCertVerificationError):
                return f"the server's certificate is not trusted ({cause.verify_message})", True
        text = str(exc)
        if "STARTTLS extension not supported" in text:
            return "the server offers no STARTTLS", True
        if "AUTH extension is not supported" in text:
            return "the server offers no AUTH", True
        return self._scrub(f"{type(exc).__name__}: {text}"), False

    async def _probe_until_up(self) -> None:
        wait = PROBE_FIRST
        while True:
            await asyncio.sleep(max(0.0, self._next_probe - time.monotonic()))
            try:
                client = await self._connect()
            except Exception as exc:
                # Whatever went wrong, the server is not usable yet; a probe that died instead
                # would leave the circuit open for good.
                self._report(exc)
                wait = min(PROBE_MAX, 2 * wait)
                self._next_probe = time.monotonic() + wait
                continue
            if len(self._idle) < self.pool_size:
                self._idle.append(client)  # the first letter after the outage needs no connect
            else:
                self._discard(client)
            self._probe = None
            log.info("email channel up again: %s answers", self.describe())
            self.trouble = None
            return

    @property
    def password(self) -> str | None:
        # Read from the URL, never copied into this object's __dict__ (which a debugger or a
        # careless repr would show); SmtpUrl keeps it out of its own repr.
        return self.url.password

    def _scrub(self, text: str) -> str:
        """A server's reply goes into the send log: a server that echoes what AUTH sent (the
        password, or it in base64 as AUTH PLAIN and LOGIN send it) must not put it there."""
        if not self.password:
            return text
        plain = f"\0{self.username or ''}\0{self.password}".encode()
        for secret in (
            self.password,
            *(base64.b64encode(v).decode() for v in (plain, self.password.encode())),
        ):
            text = text.replace(secret, "***")
        return text

    def describe(self) -> str:
        """Where letters go, fit for logs: scheme, host and port, no credentials."""
        return str(self.url)

    async def _connect(self) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            timeout=self.timeout,
            use_tls=self.scheme == "smtps",
            start_tls=self.scheme == "smtp+starttls",
            tls_context=self.tls_context if self.scheme != "smtp" else None,
        )
        # A refused or reset connect is retried briefly here; a server that stays down makes the
        # delivery's attempt fail as transient, and the persisted backoff takes over.
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(3),
            wait=wait_exponential(multiplier=0.1, max=1.0) + wait_random(0, 0.1),
            retry=retry_if_exception_type((aiosmtplib.SMTPConnectError, ConnectionError)),
            reraise=True,
        ):
            with attempt:
                await client.connect()
        if client.is_ehlo_or_helo_needed:
            try:
                await client.ehlo()
            except aiosmtplib.SMTPHeloError:
                await client.helo()
        return client

    @staticmethod
    async def _transaction(
        client: aiosmtplib.SMTP, mail: OutgoingMail
    ) -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
        """MAIL, RCPT…, DATA, as ``SMTP.sendmail`` does, minus its per-message costs.

        ``sendmail`` parses every address twice with ``email.utils.parseaddr`` (about 100 µs
        each: more than half of our CPU per letter). Our addresses were validated when they
        entered the system; ``smtp_path`` checks they are safe on a command line, once each.
        Each reply has the client's timeout (``DISPATCHER_SMTP_TIMEOUT``), not the transaction:
        a slow server answers a letter with copies within the timeout per command, and a letter
        whose DATA already went through is not given up on (and sent again) for its slowness.
        """
        try:
            reply = await client.execute_command(b"MAIL", b"FROM:" + smtp_path(mail.sender))
            if reply.code != 250:
                raise aiosmtplib.SMTPSenderRefused(reply.code, reply.message, mail.sender)
            refused: dict[str, aiosmtplib.SMTPResponse] = {}
            for recipient in mail.recipients:
                reply = await client.execute_command(b"RCPT", b"TO:" + smtp_path(recipient))
                if reply.code in (250, 251):
                    continue
                if recipient == mail.recipients[0]:
                    # The letter is for the addressee; copies without it are letters to nobody.
                    raise aiosmtplib.SMTPRecipientsRefused(
                        [aiosmtplib.SMTPRecipientRefused(reply.code, reply.message, recipient)]
                    )
                refused[recipient] = reply
            reply = await client.data(mail.data)
        except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
            if client.is_connected:
                with contextlib.suppress(aiosmtplib.SMTPException, ConnectionError):
                    await client.rset()
            raise
        return refused, reply.message

    @staticmethod
    def _discard(client: aiosmtplib.SMTP | None) -> None:
        if client is not None and client.is_connected:
            client.close()

    @property
    def concurrency(self) -> int:
        # Two letters per connection: the next is built while one is on the wire.
        return max(4, 2 * self.pool_size)

    def drain(self) -> None:
        self._draining = True

    def longest_attempt(self, recipients: int) -> float:
        # MAIL, one RCPT each, DATA and the message's end, each within the timeout. The connect
        # is not counted: a letter still connecting when the worker stops is handed back unsent.
        return (3 + recipients) * self.timeout

    async def send(self, mail: OutgoingMail, start_by: float = math.inf) -> Reply:
        async with self._slots:
            if time.monotonic() > start_by:
                raise Unavailable("waited too long for a connection; handed back unattempted")
            return await self._send(mail)

    async def _send(self, mail: OutgoingMail) -> Reply:
        if self.ready_in() > 0:
            raise Unavailable(f"{self.describe()} unreachable; next try in {self.ready_in():.0f} s")
        client = self._idle.pop() if self._idle else None
        try:
            if client is None or not client.is_connected:
                try:
                    client = await self._connect()
                except (*_CONNECTION_ERRORS, aiosmtplib.SMTPException) as exc:
                    self._open_circuit(exc)
                    raise
            if self._draining:
                raise Unavailable("the worker is stopping; handed back unattempted")
            errors, reply = await self._transaction(client, mail)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            first = exc.recipients[0]
            raise SendError(
                self._scrub(f"{first.code} {first.message} ({first.recipient})"),
                transient=first.code < 500,
                code=first.code,
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == 421 or not (client and client.is_connected):
                self._discard(client)
                client = None
            detail = self._scrub(f"{exc.code} {exc.message}")
            raise SendError(detail, transient=exc.code < 500, code=exc.code) from exc
        except (*_CONNECTION_ERRORS, aiosmtplib.SMTPException) as exc:
            # Includes a server that offers no AUTH or no STARTTLS: a configuration problem the
            # operator can fix, so the letters wait with backoff instead of failing at once.
            self._discard(client)
            client = None
            raise SendError(self._scrub(f"{type(exc).__name__}: {exc}"), transient=True) from exc
        finally:
            if client is not None:
                self._idle.append(client)
        detail = reply
        if errors:
            detail += "; copies refused: " + ", ".join(f"{r} {e.code} {e.message}" for r, e in errors.items())
        return Reply(250, detail)

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
            self._probe = None
        while self._idle:
            client = self._idle.pop()
            if client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError):
                    client.close()
