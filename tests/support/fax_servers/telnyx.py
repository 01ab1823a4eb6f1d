"""A fake Telnyx Programmable Fax API v2, from Telnyx's documentation, for loopback tests.

It checks the Bearer key, validates ``POST /faxes`` as Telnyx does (E.164 numbers, a
``media_url``, base64 ``client_state``), fetches the PDF from ``media_url`` the way Telnyx
does (no redirects), keeps every fax it accepted, lists them with Telnyx's deepObject filters
and paging, cancels queued ones, and sends real webhooks, signed with Ed25519 over
``"<timestamp>|<body>"``, to each fax's ``webhook_url`` a moment after it accepted it.

What becomes of each fax is scripted per destination number (``plan``), and so is how each
``POST /faxes`` is answered (``answer``): a 429 with Retry-After, a 500, a 422, or a fax
accepted and recorded whose HTTP answer never comes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import json
import operator
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.fax_servers.control import Outcome, Refusal, Submission, Switches

E164 = re.compile(r"\+[1-9][0-9]{6,14}")
CANCELLABLE = ("queued", "media.processed", "originated", "sending")
PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")


def public_key_b64(key: Ed25519PrivateKey) -> str:
    """The form Telnyx's portal shows the account's public key in."""
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def signed_headers(key: Ed25519PrivateKey, body: bytes, stamp: int | None = None) -> dict[str, str]:
    stamp = int(time.time()) if stamp is None else stamp
    signature = key.sign(f"{stamp}|".encode() + body)
    return {
        "content-type": "application/json",
        "telnyx-signature-ed25519": base64.b64encode(signature).decode(),
        "telnyx-timestamp": str(stamp),
    }


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Plan:
    """What becomes of one accepted fax."""

    failure: str | None = None  # a Telnyx failure_reason (user_busy…); None: delivered
    webhooks: bool = True  # False: every webhook lost (only polling can tell)
    twice: bool = False  # the final webhook comes again (Telnyx's retry: same event id)
    reorder: bool = False  # the final webhook comes before fax.sending.started
    forged: bool = False  # the final webhook is signed with another key
    stale: bool = False  # the final webhook carries a timestamp ten minutes old
    hold: bool = False  # stays queued until cancelled
    duration: int = 25  # call_duration_secs


@dataclass(frozen=True)
class Answer:
    """How one ``POST /faxes`` is answered instead of the usual 202."""

    status: int
    code: str = "10007"
    title: str = "Unexpected error"
    pointer: str | None = None
    retry_after: str | None = None
    hang: bool = False  # accept and record the fax, then never answer


INVALID_NUMBER = Answer(422, "10016", "Phone number must be in +E.164 format", "/to")
BROKEN = Answer(500, "10007", "Unexpected error")
HANG = Answer(202, hang=True)


def too_many(seconds: int) -> Answer:
    return Answer(429, "10011", "Too many requests", retry_after=str(seconds))


FAILURE_REASONS = {
    Outcome.BUSY: "user_busy",
    Outcome.NO_ANSWER: "receiver_no_answer",
    Outcome.NOT_A_FAX: "fax_initial_communication_timeout",
}
REFUSALS = {
    Refusal.INVALID_NUMBER: INVALID_NUMBER,
    Refusal.RATE_LIMITED: too_many(1),
    Refusal.BROKEN: BROKEN,
    Refusal.HANG: HANG,
}


@dataclass
class Fax:
    id: str
    to: str
    sender: str
    connection_id: str
    media_url: str
    webhook_url: str
    client_state: str | None
    plan: Plan
    created_at: dt.datetime
    status: str = "queued"
    updated_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    failure_reason: str | None = None
    page_count: int | None = None
    pdf: bool | None = None  # what the fetch of media_url found: a PDF, or not
    released: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def reference(self) -> str | None:
        try:
            return base64.b64decode(self.client_state or "", validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None

    def move(self, status: str, failure_reason: str | None = None) -> None:
        self.status, self.failure_reason = status, failure_reason
        self.updated_at = dt.datetime.now(dt.UTC)

    def resource(self) -> dict[str, Any]:
        return {
            "record_type": "fax",
            "id": self.id,
            "connection_id": self.connection_id,
            "direction": "outbound",
            "from": self.sender,
            "to": self.to,
            "media_url": self.media_url,
            "quality": "high",
            "store_media": False,
            "webhook_url": self.webhook_url,
            "webhook_failover_url": "",
            "status": self.status,
            "failure_reason": self.failure_reason,
            "client_state": self.client_state,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


@dataclass(frozen=True)
class Sent:
    """One webhook the fake sent, and the answer it got."""

    fax_id: str
    event_type: str
    event_id: str
    status: int


def error(status: int, code: str, title: str, pointer: str | None = None, **headers: str) -> JSONResponse:
    item: dict[str, Any] = {"code": code, "title": title, "detail": title}
    if pointer:
        item["source"] = {"pointer": pointer}
    return JSONResponse({"errors": [item]}, status_code=status, headers=headers or None)


class FakeTelnyx(Switches):
    def __init__(
        self, api_key: str, connection_id: str, sender: str, key: Ed25519PrivateKey, step: float = 0.02
    ) -> None:
        self.api_key = api_key
        self.connection_id = connection_id
        self.sender = sender
        self.key = key
        self.step = step  # seconds between one state of a fax and the next
        self.plans: dict[str, list[Plan]] = {}
        self.answers: dict[str, list[Answer]] = {}
        self.faxes: dict[str, Fax] = {}
        self.posts: list[tuple[str, int]] = []  # (to, status answered) for every POST /faxes
        self.webhooks: list[Sent] = []
        self.cancels: list[tuple[str, int]] = []
        self.calls: list[Submission] = []
        self.max_page_size = 250  # the most the fake lists a page, whatever the client asks
        self.list_requests = 0
        self.others: set[str] = set()  # another deployment's faxes (``crowd``): not ours
        Switches.__init__(self)
        self._tasks: set[asyncio.Task[None]] = set()
        self.app = Starlette(
            lifespan=self._lifespan,
            routes=[
                Route("/faxes", self.create, methods=["POST"]),
                Route("/faxes", self.list, methods=["GET"]),
                Route("/faxes/{id}", self.view, methods=["GET"]),
                Route("/faxes/{id}/actions/cancel", self.cancel, methods=["POST"]),
            ],
        )

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        yield
        for task in list(self._tasks):  # faxes still held or on their way when the test ends
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # scripting --------------------------------------------------------------------------------
    def plan(self, number: str, *plans: Plan) -> None:
        """What becomes of the next faxes to this number, in turn; then they are delivered."""
        self.plans.setdefault(number, []).extend(plans)

    def answer(self, number: str, *answers: Answer) -> None:
        """How the next submissions to this number are answered, in turn; then 202."""
        self.answers.setdefault(number, []).extend(answers)

    # the control API every fake offers (tests/support/fax_servers/control.py) --------------------------
    def outcome(self, number: str, *outcomes: Outcome) -> None:
        self.plan(number, *(Plan(failure=FAILURE_REASONS.get(o)) for o in outcomes))

    def refuse_next(self, number: str, *refusals: Refusal) -> None:
        self.answer(number, *(REFUSALS[r] for r in refusals))

    def crowd(self, number: str, others: int) -> None:
        # Its list filters by number: another deployment's faxes to the same one stand in the way.
        self.max_page_size = 1
        later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
        for n in range(others):
            state = base64.b64encode(f"d{90 + n}-x".encode()).decode()
            fax = Fax(
                str(uuid.uuid4()), number, self.sender, self.connection_id, "", "", state, Plan(), later
            )
            fax.move("delivered")
            self.faxes[fax.id] = fax
            self.others.add(fax.id)

    def listed_pages(self) -> int:
        return self.list_requests

    def job_ids(self, number: str) -> list[str]:
        return [f.id for f in self.faxes_to(number)]

    def job_states(self, number: str) -> list[str]:
        return [f.status for f in self.faxes_to(number)]

    def references(self, number: str) -> list[str | None]:
        return [f.reference for f in self.faxes_to(number)]

    def submissions(self, number: str) -> list[Submission]:
        return [c for c in list(self.calls) if c.to == number]

    def final_answers(self, number: str) -> list[int]:
        ids = set(self.job_ids(number))
        finals = ("fax.delivered", "fax.failed")
        return [s.status for s in list(self.webhooks) if s.fax_id in ids and s.event_type in finals]

    def faxes_to(self, number: str) -> list[Fax]:
        """Our faxes to this number (not another deployment's)."""
        return [f for f in list(self.faxes.values()) if f.to == number and f.id not in self.others]

    def sent(self, fax_id: str) -> list[Sent]:
        return [w for w in list(self.webhooks) if w.fax_id == fax_id]

    # the API ----------------------------------------------------------------------------------
    def _refused(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return error(401, "10009", "Authentication failed")
        return None

    async def create(self, request: Request) -> Response:
        if refused := self._refused(request):
            return refused
        try:
            body = json.loads(await request.body())
        except ValueError:
            return error(400, "10015", "Bad Request")
        if not isinstance(body, dict):
            return error(400, "10015", "Bad Request")
        to = str(body.get("to", ""))
        scripted = self.answers.get(to, [])
        answer = scripted.pop(0) if scripted else None
        if answer and not answer.hang:
            self._posted(to, answer.status)
            headers = {"Retry-After": answer.retry_after} if answer.retry_after else {}
            return error(answer.status, answer.code, answer.title, answer.pointer, **headers)
        invalid = self._invalid(body)
        if invalid is not None:
            self._posted(to, invalid.status_code)
            return invalid
        fax = self._accept(body)
        self._posted(to, 202)
        if answer and answer.hang:
            # Telnyx took the fax, and the client never hears so: as if it died mid-request.
            while (await request.receive())["type"] != "http.disconnect":
                pass
        return JSONResponse({"data": fax.resource()}, status_code=202)

    def _posted(self, to: str, status: int) -> None:
        self.posts.append((to, status))
        self.calls.append(Submission(to, status, time.monotonic()))

    def _invalid(self, body: dict[str, Any]) -> Response | None:
        for name in ("connection_id", "to", "from"):
            if not isinstance(body.get(name), str) or not body[name]:
                return error(422, "10004", f"Missing required parameter {name}", f"/{name}")
        if body["connection_id"] != self.connection_id:
            return error(422, "10015", "Invalid connection_id", "/connection_id")
        if body["from"] != self.sender:
            return error(422, "10015", "The from number is not on this account", "/from")
        if not E164.fullmatch(body["to"]):
            return error(422, "10016", "Phone number must be in +E.164 format", "/to")
        if not isinstance(body.get("media_url"), str) and not isinstance(body.get("media_name"), str):
            return error(422, "10004", "media_url or media_name is required", "/media_url")
        state = body.get("client_state")
        if state is not None:
            try:
                base64.b64decode(str(state), validate=True)
            except binascii.Error:
                return error(422, "10015", "client_state must be base64", "/client_state")
        return None

    def _accept(self, body: dict[str, Any]) -> Fax:
        plans = self.plans.get(body["to"], [])
        fax = Fax(
            id=str(uuid.uuid4()),
            to=body["to"],
            sender=body["from"],
            connection_id=body["connection_id"],
            media_url=str(body.get("media_url", "")),
            webhook_url=str(body.get("webhook_url", "")),
            client_state=body.get("client_state"),
            plan=plans.pop(0) if plans else Plan(),
            created_at=dt.datetime.now(dt.UTC),
        )
        self.faxes[fax.id] = fax
        task = asyncio.create_task(self._progress(fax))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return fax

    async def list(self, request: Request) -> Response:
        if refused := self._refused(request):
            return refused
        query = request.query_params
        try:
            number = int(query.get("page[number]", "1"))
            size = int(query.get("page[size]", "20"))
        except ValueError:
            return error(422, "10015", "Invalid page parameters")
        if number < 1 or not 1 <= size <= 250:
            return error(422, "10015", "Invalid page parameters")
        self.list_requests += 1
        size = min(size, self.max_page_size)
        found = sorted(
            (f for f in list(self.faxes.values()) if _matches(f, query)),
            key=lambda f: f.created_at,
            reverse=True,
        )
        page = found[(number - 1) * size : number * size]
        meta = {
            "page_number": number,
            "page_size": size,
            "total_pages": max(1, -(-len(found) // size)),
            "total_results": len(found),
        }
        return JSONResponse({"data": [f.resource() for f in page], "meta": meta})

    async def view(self, request: Request) -> Response:
        if refused := self._refused(request):
            return refused
        fax = self.faxes.get(request.path_params["id"])
        if fax is None:
            return error(404, "404", "Not Found")
        return JSONResponse({"data": fax.resource()})

    async def cancel(self, request: Request) -> Response:
        if refused := self._refused(request):
            return refused
        fax = self.faxes.get(request.path_params["id"])
        if fax is None:
            self.cancels.append((request.path_params["id"], 404))
            return error(404, "404", "Not Found")
        if fax.status not in CANCELLABLE:
            self.cancels.append((fax.id, 422))
            return error(422, "10015", "Unprocessable entity")
        # What Telnyx reports for a cancelled fax is undocumented: failed, reason "canceled".
        fax.move("failed", "canceled")
        fax.released.set()
        self.cancels.append((fax.id, 202))
        return JSONResponse({"data": {"result": "ok"}}, status_code=202)

    # a fax's life -----------------------------------------------------------------------------
    async def _progress(self, fax: Fax) -> None:
        await asyncio.sleep(self.step)
        await self._webhook(fax, "fax.queued")
        if not await self._fetch(fax):
            fax.move("failed", "file_download_failed" if fax.pdf is None else "file_format_invalid")
            await self._webhook(fax, "fax.failed")
            return
        fax.move("media.processed")
        await self._webhook(fax, "fax.media.processed")
        if fax.plan.hold:
            await fax.released.wait()
            return
        # The test's thread changes ``held``: no asyncio.Event of this loop can tell.
        while fax.to in self.held and fax.status != "failed":  # noqa: ASYNC110
            await asyncio.sleep(self.step)
        if fax.status == "failed":
            return  # cancelled while it waited
        await asyncio.sleep(self.step)
        final = "fax.failed" if fax.plan.failure else "fax.delivered"
        if fax.plan.reorder:
            self._finish(fax)
            await self._webhook(fax, final, last=True)
            await self._webhook(fax, "fax.sending.started", status="sending")
            return
        fax.move("sending")
        await self._webhook(fax, "fax.sending.started")
        await asyncio.sleep(self.step)
        self._finish(fax)
        await self._webhook(fax, final, last=True)

    def _finish(self, fax: Fax) -> None:
        if fax.plan.failure:
            fax.move("failed", fax.plan.failure)
        else:
            fax.move("delivered")

    async def _fetch(self, fax: Fax) -> bool:
        """Telnyx downloads the document itself, and a redirect makes it fail."""
        try:
            async with httpx.AsyncClient(follow_redirects=False, timeout=5) as client:
                response = await client.get(fax.media_url)
        except httpx.HTTPError:
            return False
        if response.status_code != 200:
            return False
        fax.pdf = response.content.startswith(b"%PDF-")
        fax.page_count = max(1, len(PAGE.findall(response.content)))
        return fax.pdf

    # webhooks ---------------------------------------------------------------------------------
    def _payload(self, fax: Fax, status: str) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "fax_id": fax.id,
            "connection_id": fax.connection_id,
            "direction": "outbound",
            "from": fax.sender,
            "to": fax.to,
            "original_media_url": fax.media_url,
            "status": status,
            "client_state": fax.client_state,
            "user_id": "5f1f9ab0-0000-4000-8000-000000000001",
        }
        if status == "delivered":
            payload |= {"page_count": fax.page_count or 1, "call_duration_secs": fax.plan.duration}
        if status == "failed":
            payload["failure_reason"] = fax.failure_reason
        return payload

    async def _webhook(
        self, fax: Fax, event_type: str, last: bool = False, status: str | None = None
    ) -> None:
        if not fax.plan.webhooks or fax.to in self.dropped or not fax.webhook_url:
            return
        event_id = str(uuid.uuid4())
        data = {
            "record_type": "event",
            "id": event_id,
            "event_type": event_type,
            "occurred_at": iso(dt.datetime.now(dt.UTC)),
            "payload": self._payload(fax, status or fax.status),
        }
        twice = last and (fax.plan.twice or fax.to in self.repeated)
        for attempt in range(1, 3 if twice else 2):
            body = json.dumps({"data": data, "meta": {"attempt": attempt, "delivered_to": fax.webhook_url}})
            key = Ed25519PrivateKey.generate() if last and fax.plan.forged else self.key
            stamp = int(time.time()) - (600 if last and fax.plan.stale else 0)
            try:
                async with httpx.AsyncClient(timeout=5) as client:
                    headers = signed_headers(key, body.encode(), stamp)
                    response = await client.post(fax.webhook_url, content=body, headers=headers)
                code = response.status_code
            except httpx.HTTPError:
                code = 0
            self.webhooks.append(Sent(fax.id, event_type, event_id, code))
            await asyncio.sleep(self.step)


def _matches(fax: Fax, query: Any) -> bool:
    """Telnyx's list filters: filter[to][eq], filter[from][eq], filter[direction][eq] and
    filter[created_at][gte|gt|lte|lt]."""
    for name, value in (("to", fax.to), ("from", fax.sender), ("direction", "outbound")):
        wanted = query.get(f"filter[{name}][eq]")
        if wanted is not None and wanted != value:
            return False
    checks = {"gte": operator.ge, "gt": operator.gt, "lte": operator.le, "lt": operator.lt}
    for op, check in checks.items():
        bound = query.get(f"filter[created_at][{op}]")
        if bound is not None and not check(fax.created_at, dt.datetime.fromisoformat(bound)):
            return False
    return True
