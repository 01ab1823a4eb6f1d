"""A fake Twilio-shaped fax API (SignalWire's Compatibility API, ``/api/laml/2010-04-01``), from
the documented shape, for loopback tests.

It checks HTTP Basic credentials (Account SID and auth token), takes form-encoded
``POST /Accounts/{sid}/Faxes.json`` (To, From, MediaUrl, StatusCallback), fetches the PDF from
``MediaUrl`` (no redirects; a 200 ``application/pdf`` starting ``%PDF-``) as the provider does
while ``processing``, keeps every fax, lists them with the documented filters (To, From,
DateCreatedAfter, DateCreatedOnOrBefore) and the 2010-style paging envelope (a relative
``next_page_uri`` carrying a PageToken), fetches one, cancels a queued one
(``Status=canceled``), and POSTs real status callbacks to each fax's StatusCallback, signed as
Twilio signs them (base64 HMAC-SHA1 of the URL and the sorted form fields).

What each submission meets is scripted per destination number (``script``): delivered, busy,
no answer, not a fax, failed, stuck sending, refused as an invalid number, a 429 with
Retry-After, a 500, or accepted and recorded with an HTTP answer that never comes (``hang``).
How its callbacks go is scripted per number too (``webhooks``): none, twice, out of order,
badly signed, signed over another URL, unsigned. A held number's faxes wait, queued.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from tests.support.asgi_server import serve
from tests.support.fax_servers.control import Outcome, Refusal, Submission, Switches

PREFIX = "/api/laml/2010-04-01"
ACCOUNT = "b3877c40-da60-4998-90ad-b792e98472ac"  # a SignalWire Project ID is a UUID
TOKEN = "PTtest-token-not-a-secret"
E164 = re.compile(r"\+[1-9][0-9]{6,14}")
PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")
SUBMIT_ANSWERS = ("invalid", "429", "500")
FINAL = {
    "deliver": ("delivered", None, None),
    "busy": ("busy", 34002, "Callee Busy"),
    "no-answer": ("no-answer", 34003, "Callee did not answer"),
    # SignalWire's fax engine (FreeSWITCH/spandsp) ends a call no fax answered with T.30 result 2.
    "not-a-fax": ("failed", 2, "Timed out waiting for initial communication"),
    "failed": ("failed", 34004, "Error during fax transmission"),
}


PLANS = {
    Outcome.DELIVERED: "deliver",
    Outcome.BUSY: "busy",
    Outcome.NO_ANSWER: "no-answer",
    Outcome.NOT_A_FAX: "not-a-fax",
    Refusal.INVALID_NUMBER: "invalid",
    Refusal.RATE_LIMITED: "429",
    Refusal.BROKEN: "500",
    Refusal.HANG: "hang",
}
UNDER_WAY = ("queued", "processing", "sending", "canceled")


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


NOT_FOUND = "The requested resource was not found"


def error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://example.org/errors/{code}",
        "status": status,
    }
    return JSONResponse(body, status_code=status, headers=headers)


@dataclass
class Fax:
    sid: str
    to: str
    sender: str
    media_url: str
    callback: str | None
    plan: str
    created: dt.datetime
    status: str = "queued"
    updated: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    pages: int | None = None
    duration: int | None = None
    error_code: int | None = None
    error_message: str | None = None

    def resource(self, account: str) -> dict[str, Any]:
        url = f"{PREFIX}/Accounts/{account}/Faxes/{self.sid}"
        return {
            "sid": self.sid,
            "account_sid": account,
            "from": self.sender,
            "to": self.to,
            "status": self.status,
            "direction": "outbound",
            "quality": "fine",
            "num_pages": None if self.pages is None else str(self.pages),  # SignalWire: a string
            "duration": self.duration,
            "media_sid": f"ME{self.sid[:8]}",
            "media_url": self.media_url,
            "price": None,
            "price_unit": "USD",
            "api_version": "v1",
            "date_created": iso(self.created),
            "date_updated": iso(self.updated),
            "error_code": self.error_code,
            "error_message": self.error_message,
            "links": {"media": f"{url}/Media"},
            "url": url,
        }

    def finish(self, status: str, code: int | None = None, message: str | None = None) -> None:
        self.status, self.error_code, self.error_message = status, code, message
        self.updated = dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Callback:
    sid: str
    status: str
    answer: int  # our web app's HTTP status (-1: unreachable)


@dataclass(frozen=True)
class Fetch:
    url: str
    status: int
    content_type: str
    cache_control: str


@dataclass(frozen=True)
class Call:
    at: float  # time.monotonic()
    to: str
    answer: int


class FakeTwilio(Switches):
    def __init__(
        self, signing_key: str | None = None, delay: float = 0.05, sender: str = "+442079460999"
    ) -> None:
        self.account = ACCOUNT
        self.sender = sender  # the number the dispatcher sends from (its list filters by it)
        self.token = TOKEN
        self.signing_key = signing_key or TOKEN
        self.signature_header = "X-Twilio-Signature"
        self.delay = delay
        self.faxes: dict[str, Fax] = {}
        self.script: dict[str, list[str]] = {}  # number -> what each submission meets, in turn
        self.webhooks: dict[str, str] = {}  # number -> normal|none|twice|out-of-order|bad-signature…
        Switches.__init__(self)  # its webhooks are switched by ``webhooks``
        self.retry_after = 1
        self.max_page_size = 1000
        self.calls: list[Call] = []  # POST Faxes.json, answered or not
        self.fetches: list[Fetch] = []
        self.callbacks: list[Callback] = []
        self.list_requests = 0
        self.others: set[str] = set()  # another deployment's faxes (``crowd``): not ours
        self.refusals: dict[str, list[str]] = {}  # number -> taken before ``script``
        self.closed = threading.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        base = f"{PREFIX}/Accounts/{{account}}/Faxes"
        self.app = Starlette(
            routes=[
                Route(f"{base}.json", self.create, methods=["POST"]),
                Route(f"{base}.json", self.index, methods=["GET"]),
                Route(f"{base}/{{sid}}.json", self.fetch, methods=["GET"]),
                Route(f"{base}/{{sid}}.json", self.update, methods=["POST"]),
            ]
        )

    @contextlib.contextmanager
    def running(self) -> Iterator[str]:
        """Serve on loopback; yields the base URL the adapter is configured with."""
        with serve(self.app) as url:
            try:
                yield url + PREFIX
            finally:
                self.closed.set()  # ends hanging answers and held faxes, so the server can stop

    # scripting and inspection -----------------------------------------------------------------
    def to(self, number: str) -> list[Fax]:
        return sorted((f for f in self.faxes.values() if f.to == number), key=lambda f: f.created)

    def add(self, to: str, sender: str, media_url: str, status: str, ago: float = 60.0) -> Fax:
        """A fax that exists already (someone else's, or from an earlier run)."""
        created = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=ago)
        fax = Fax(str(uuid.uuid4()), to, sender, media_url, None, "deliver", created, status, created)
        self.faxes[fax.sid] = fax
        return fax

    # the control API every fake offers (tests/support/fax_servers/control.py) --------------------------
    def outcome(self, number: str, *outcomes: Outcome) -> None:
        # ``script`` repeats its last step: end with a delivery, as the other fakes do.
        planned = [p for p in self.script.get(number, []) if p != "deliver"]
        self.script[number] = [*planned, *(PLANS[o] for o in outcomes), "deliver"]

    def refuse_next(self, number: str, *refusals: Refusal) -> None:
        self.refusals.setdefault(number, []).extend(PLANS[r] for r in refusals)

    def drop_webhooks(self, number: str) -> None:
        self.webhooks[number] = "none"

    def repeat_webhooks(self, number: str) -> None:
        self.webhooks[number] = "twice"

    def crowd(self, number: str, others: int) -> None:
        # Its list filters by number: another deployment's faxes to the same one stand in the way.
        self.max_page_size = 1
        for n in range(others):
            media = f"http://127.0.0.1/media/fax/x.pdf?ref=d{90 + n}-x"
            self.others.add(self.add(number, self.sender, media, "delivered", ago=-60).sid)

    def listed_pages(self) -> int:
        return self.list_requests

    def _ours(self, number: str) -> list[Fax]:
        return [f for f in self.to(number) if f.sid not in self.others]

    def job_ids(self, number: str) -> list[str]:
        return [f.sid for f in self._ours(number)]

    def job_states(self, number: str) -> list[str]:
        return [f.status for f in self._ours(number)]

    def references(self, number: str) -> list[str | None]:
        return [parse_qs(urlsplit(f.media_url).query).get("ref", [None])[0] for f in self._ours(number)]

    def submissions(self, number: str) -> list[Submission]:
        return [Submission(c.to, c.answer, c.at) for c in list(self.calls) if c.to == number]

    def final_answers(self, number: str) -> list[int]:
        ids = set(self.job_ids(number))
        return [c.answer for c in list(self.callbacks) if c.sid in ids and c.status not in UNDER_WAY]

    def _next(self, number: str) -> str:
        if self.refusals.get(number):
            return self.refusals[number].pop(0)
        plan = self.script.get(number) or ["deliver"]
        return plan.pop(0) if len(plan) > 1 else plan[0]

    # the API ----------------------------------------------------------------------------------
    def _refused(self, request: Request) -> Response | None:
        expected = base64.b64encode(f"{self.account}:{self.token}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return error(401, 20003, "Authentication Error - invalid username")
        if request.path_params["account"] != self.account:
            return error(404, 20404, NOT_FOUND)
        return None

    def _fax(self, request: Request) -> Fax | Response:
        """The fax the path names, or the refusal Twilio answers instead."""
        if refused := self._refused(request):
            return refused
        return self.faxes.get(request.path_params["sid"]) or error(404, 20404, NOT_FOUND)

    async def create(self, request: Request) -> Response:
        if refused := self._refused(request):
            return refused
        form = await request.form()
        to, sender, media = (str(form.get(k) or "") for k in ("To", "From", "MediaUrl"))
        plan = self._next(to)
        answer = {"429": 429, "500": 500, "invalid": 400}.get(plan, 201)
        if not E164.fullmatch(to):
            answer = 400
        self.calls.append(Call(time.monotonic(), to, answer))
        if answer == 429:
            return error(429, 20429, "Too Many Requests", {"Retry-After": str(self.retry_after)})
        if answer == 500:
            return error(500, 20500, "Internal Server Error")
        if answer == 400:
            return error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if not E164.fullmatch(sender) or not media.startswith(("http://", "https://")):
            return error(400, 21603, "A 'From' phone number and a 'MediaUrl' are required")
        callback = str(form.get("StatusCallback") or "") or None
        now = dt.datetime.now(dt.UTC)
        fax = Fax(str(uuid.uuid4()), to, sender, media, callback, plan, now, updated=now)
        self.faxes[fax.sid] = fax
        self._start(self._lifecycle(fax))
        if plan == "hang":
            # Accepted and recorded, but the answer never reaches the client (a crash on its side).
            await self._until(self.closed.is_set)
        return JSONResponse(fax.resource(self.account), status_code=201)

    async def index(self, request: Request) -> Response:
        if refused := self._refused(request):
            return refused
        self.list_requests += 1
        q = request.query_params
        faxes = sorted(self.faxes.values(), key=lambda f: f.created, reverse=True)
        if q.get("To"):
            faxes = [f for f in faxes if f.to == q["To"]]
        if q.get("From"):
            faxes = [f for f in faxes if f.sender == q["From"]]
        if q.get("DateCreatedAfter"):
            after = dt.datetime.fromisoformat(q["DateCreatedAfter"])
            faxes = [f for f in faxes if f.created.replace(microsecond=0) > after]
        if q.get("DateCreatedOnOrBefore"):
            until = dt.datetime.fromisoformat(q["DateCreatedOnOrBefore"])
            faxes = [f for f in faxes if f.created.replace(microsecond=0) <= until]
        size = min(int(q.get("PageSize") or 50), 1000, self.max_page_size)
        page = int(q.get("Page") or 0)
        if page > 0 and q.get("PageToken") != f"PA{page * size}":
            return error(400, 20001, "PageToken is required with Page")
        start = page * size
        return JSONResponse(self._envelope(request, faxes[start : start + size], page, size, len(faxes)))

    def _envelope(
        self, request: Request, faxes: list[Fax], page: int, size: int, total: int
    ) -> dict[str, Any]:
        kept = {k: v for k, v in request.query_params.items() if k not in ("Page", "PageToken", "PageSize")}
        path = f"{PREFIX}/Accounts/{self.account}/Faxes.json"

        def uri(n: int) -> str:
            token = {"PageToken": f"PA{n * size}"} if n else {}
            return f"{path}?{urlencode({**kept, 'PageSize': size, 'Page': n, **token})}"

        return {
            "uri": uri(page),
            "first_page_uri": uri(0),
            "next_page_uri": uri(page + 1) if (page + 1) * size < total else None,
            "previous_page_uri": uri(page - 1) if page else None,
            "page": page,
            "page_size": size,
            "faxes": [f.resource(self.account) for f in faxes],
        }

    async def fetch(self, request: Request) -> Response:
        if isinstance(fax := self._fax(request), Response):
            return fax
        return JSONResponse(fax.resource(self.account))

    async def update(self, request: Request) -> Response:
        if isinstance(fax := self._fax(request), Response):
            return fax
        if (await request.form()).get("Status") != "canceled":
            return error(400, 20001, "Status must be 'canceled'")
        if fax.status != "queued":
            return error(400, 20001, f"A fax that is {fax.status} cannot be canceled")
        fax.finish("canceled")
        self._start(self._notify(fax))
        return JSONResponse(fax.resource(self.account))

    # what happens to a fax after it was accepted ---------------------------------------------------
    def _start(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _until(done: Callable[[], bool]) -> None:
        # The test's thread changes what ``done`` reads: no asyncio.Event of this loop can tell.
        while not done():  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    async def _lifecycle(self, fax: Fax) -> None:
        mode = self.webhooks.get(fax.to, "normal")
        if mode != "out-of-order":
            await self._notify(fax)
        await self._until(lambda: fax.to not in self.held or self.closed.is_set())
        await asyncio.sleep(self.delay)
        if fax.status != "queued":
            return  # canceled while it waited
        fax.finish("processing")
        if not await self._fetch_media(fax):
            fax.finish("failed", 11200, "HTTP retrieval failure")
            await self._notify(fax)
            return
        fax.finish("sending")
        await asyncio.sleep(self.delay)
        if fax.plan == "stuck":
            return  # on the line for ever: too late to cancel
        status, code, message = FINAL.get(fax.plan, FINAL["deliver"])
        fax.finish(status, code, message)
        if status == "delivered":
            fax.duration = 20 * (fax.pages or 1)
        await self._notify(fax)
        if mode == "twice":
            await self._notify(fax)
        if mode == "out-of-order":
            await self._notify(fax, "sending")

    async def _fetch_media(self, fax: Fax) -> bool:
        try:
            async with httpx.AsyncClient(timeout=5.0, follow_redirects=False) as client:
                response = await client.get(fax.media_url)
        except httpx.HTTPError:
            return False
        kind = response.headers.get("content-type", "")
        self.fetches.append(
            Fetch(fax.media_url, response.status_code, kind, response.headers.get("cache-control", ""))
        )
        ok = response.status_code == 200 and kind.startswith("application/pdf")
        if not ok or not response.content.startswith(b"%PDF-"):
            return False
        fax.pages = len(PAGE.findall(response.content)) or 1
        return True

    async def _notify(self, fax: Fax, status: str | None = None) -> None:
        mode = self.webhooks.get(fax.to, "normal")
        if fax.callback is None or mode == "none":
            return
        params = {
            "FaxSid": fax.sid,
            "AccountSid": self.account,
            "From": fax.sender,
            "To": fax.to,
            "ApiVersion": "v1",
            "FaxStatus": status or fax.status,
            "OriginalMediaUrl": fax.media_url,
            "MediaUrl": fax.media_url,
        }
        if fax.pages is not None and status is None:
            params["NumPages"] = str(fax.pages)
        if fax.error_code is not None and status is None:
            params |= {"ErrorCode": str(fax.error_code), "ErrorMessage": fax.error_message or ""}
        await self._post(fax, params, mode)

    async def _post(self, fax: Fax, params: dict[str, str], mode: str) -> None:
        assert fax.callback is not None
        key = "not-the-signing-key" if mode == "bad-signature" else self.signing_key
        signed_url = (
            fax.callback.replace("127.0.0.1", "letters.example.org") if mode == "wrong-url" else fax.callback
        )
        signature = RequestValidator(key).compute_signature(signed_url, params)
        headers = {} if mode == "unsigned" else {self.signature_header: signature}
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                answer = (await client.post(fax.callback, data=params, headers=headers)).status_code
        except httpx.HTTPError:
            answer = -1
        self.callbacks.append(Callback(fax.sid, params["FaxStatus"], answer))
