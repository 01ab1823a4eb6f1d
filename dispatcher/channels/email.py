"""The email channel: a letter as a MIME message, over pooled SMTP or into a local Maildir.

Messages are written as bytes by hand rather than with ``email.message.EmailMessage``: the
policy machinery costs ~600 µs a letter, five times everything else on the path. What it would
have guaranteed is kept here explicitly: every header value passes through ``clean`` (no control
character, so no CR/LF can start a new header) and non-ASCII goes out as RFC 2047 encoded words.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import hashlib
import itertools
import logging
import math
import os
import re
import socket
import ssl
import time
from dataclasses import dataclass
from email.utils import format_datetime, parseaddr
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import aiosmtplib
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential, wait_random

from dispatcher.actions.model import Action, Target
from dispatcher.channels.base import Channel, Envelope, Reply, SendError, Unavailable
from dispatcher.mime import clean, mailbox_header, unstructured
from dispatcher.settings import SMTP_DEFAULT_PORTS, SmtpUrl, parse_smtp_url


def encode_body(text: str) -> tuple[str, bytes]:
    """Content-Transfer-Encoding and CRLF body: 7bit, quoted-printable or base64."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text.isascii() and all(len(line) <= 998 for line in text.split("\n")):
        return "7bit", text.replace("\n", "\r\n").encode("ascii")
    data = text.encode()
    # Mostly Latin text stays readable as quoted-printable; CJK is a third smaller as base64.
    if (len(data) - len(text)) * 3 < len(data):
        return "quoted-printable", binascii.b2a_qp(data, istext=True).replace(b"\n", b"\r\n")
    return "base64", base64.encodebytes(data).replace(b"\n", b"\r\n")


_PATH_SAFE = re.compile(r"^[!#-;=?-~]+@[!#-;=?-~]+$")  # printable ASCII except space, '"', '<', '>'


@lru_cache(maxsize=65536)
def smtp_path(address: str) -> bytes:
    """``<address>`` for MAIL FROM / RCPT TO; refuses anything that could break the command line."""
    if not _PATH_SAFE.match(address):
        raise ValueError(f"address {address!r} cannot be sent on an SMTP command line")
    return b"<" + address.encode("ascii") + b">"


def message_id(secret: bytes, delivery_id: int, domain: str) -> str:
    """Stable per delivery, so a resend after a crash carries the same Message-ID."""
    digest = hashlib.blake2b(str(delivery_id).encode(), key=secret, digest_size=12).hexdigest()
    return f"<{digest}.{delivery_id}@{domain}>"


@dataclass(frozen=True)
class OutgoingMail:
    sender: str
    recipients: tuple[str, ...]
    data: bytes


class MessageBuilder:
    """Builds the bytes of a letter; the From is the organisation's address, the Reply-To the
    supporter's only when they chose ``direct`` replies."""

    def __init__(self, sender: str, secret: bytes) -> None:
        name, address = parseaddr(sender)
        self.org_name = clean(name)
        self.org_address = address
        self.domain = address.rpartition("@")[2]
        self.secret = secret
        self._date_cache: tuple[int, str] = (0, "")

    def _date(self, now: dt.datetime) -> str:
        second = int(now.timestamp())
        if self._date_cache[0] != second:
            self._date_cache = (second, format_datetime(now.astimezone(dt.UTC).replace(microsecond=0)))
        return self._date_cache[1]

    def build(self, envelope: Envelope, copies: list[Target]) -> OutgoingMail:
        target, letter, signer = envelope.target, envelope.letter, envelope.signer
        assert target.email is not None
        mid = message_id(self.secret, envelope.delivery_id, self.domain)
        cte, body = encode_body(letter.body)
        cc = [(c.name, c.email) for c in copies if c.email]
        head = [
            f"Message-ID: {mid}\r\n",
            f"Date: {self._date(envelope.now)}\r\n",
            mailbox_header("From", [(signer.name or self.org_name, self.org_address)]),
            # Only with the supporter's consent: the target is often the government criticised.
            mailbox_header("Reply-To", [(signer.name, signer.email)]) if signer.replies == "direct" else "",
            mailbox_header("To", [(target.name, target.email)]),
            mailbox_header("Cc", cc) if cc else "",
            unstructured("Subject", letter.subject),
            "MIME-Version: 1.0\r\n",
            'Content-Type: text/plain; charset="utf-8"\r\n',
            f"Content-Transfer-Encoding: {cte}\r\n",
            f"Content-Language: {letter.language}\r\n",
            "\r\n",
        ]
        return OutgoingMail(
            sender=self.org_address,
            recipients=(target.email, *(address for _, address in cc)),
            data="".join(head).encode("ascii") + body,
        )


class MailTransport(abc.ABC):
    trouble: str | None = None  # why the transport cannot be used now, if it knows

    async def start(self) -> None:
        """Open what the transport keeps open."""

    def ready_in(self) -> float:
        """Seconds until the transport should be tried again; 0 when it is up."""
        return 0.0

    async def close(self) -> None:
        """Close what ``start`` opened."""

    @property
    def concurrency(self) -> int:
        """Letters worth having in hand at once."""
        return 4

    def drain(self) -> None:
        """Start no more transactions: letters not yet under way are handed back."""

    def longest_attempt(self, recipients: int) -> float:
        """Seconds a transaction to ``recipients`` addresses can take once under way."""
        return 1.0

    @abc.abstractmethod
    async def send(self, mail: OutgoingMail, start_by: float = math.inf) -> Reply:
        """Deliver ``mail``; raise ``Unavailable`` if it cannot start by ``start_by`` (monotonic)."""


class MaildirTransport(MailTransport):
    """Writes each message into a local Maildir: the demo default, nothing leaves the machine.

    The letters carry supporters' names and addresses, so the Maildir is its owner's alone:
    folders 0700 and messages 0600 whatever the umask (``mailbox.Maildir`` writes 0644 files).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        for folder in (path, path / "tmp", path / "new", path / "cur"):
            self._private_folder(folder)
        # Unique names as Maildir asks: time, process, a counter and the host (no '/' or ':').
        self._host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
        self._count = itertools.count()

    @staticmethod
    def _private_folder(folder: Path) -> None:
        """Create ``folder`` for its owner only; one left open by an older version is closed."""
        try:
            folder.mkdir(mode=0o700, parents=True)
        except FileExistsError:
            if folder.stat().st_uid != os.geteuid():
                return  # not ours to change
        folder.chmod(0o700)

    async def send(self, mail: OutgoingMail, start_by: float = math.inf) -> Reply:
        name = f"{time.time_ns()}.P{os.getpid()}Q{next(self._count)}.{self._host}"
        temporary, final = self.path / "tmp" / name, self.path / "new" / name
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            os.fchmod(fd, 0o600)  # exactly, even under a umask that takes the owner's bits
            file.write(mail.data)
        os.rename(temporary, final)  # readers see whole messages only (Maildir's tmp -> new)
        return Reply(250, f"written to {final}")


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


class EmailChannel(Channel):
    name = "email"

    def __init__(self, transport: MailTransport, builder: MessageBuilder) -> None:
        self.transport = transport
        self.builder = builder

    async def start(self) -> None:
        await self.transport.start()

    async def close(self) -> None:
        await self.transport.close()

    @staticmethod
    def copies(action: Action, target: Target) -> list[Target]:
        return [c for c in action.copies("email") if c.id != target.id]

    def pacing_keys(self, action: Action, target: Target) -> tuple[str, ...]:
        return tuple(f"email:{t.email}" for t in (target, *self.copies(action, target)))

    @property
    def concurrency(self) -> int:
        return self.transport.concurrency

    def ready_in(self) -> float:
        return self.transport.ready_in()

    @property
    def trouble(self) -> str | None:
        return self.transport.trouble

    def drain(self) -> None:
        self.transport.drain()

    def longest_attempt(self, action: Action, target: Target) -> float:
        return self.transport.longest_attempt(1 + len(self.copies(action, target)))

    async def send(self, envelope: Envelope) -> Reply:
        mail = self.builder.build(envelope, self.copies(envelope.action, envelope.target))
        return await self.transport.send(mail, min(envelope.start_by, envelope.deadline_by))
