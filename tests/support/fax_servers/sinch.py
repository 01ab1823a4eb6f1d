"""A fake Sinch Fax API v3 on loopback, written from its documented shape.

``/v3/projects/{projectId}/faxes``: POST (a multipart upload: ``to``, one ``file`` part that
must be a PDF, ``labels[key]``, ``callbackUrl``, ``callbackUrlContentType``), GET (a page of
faxes, filtered by direction, status, ``to`` prefix and ``createTime>=``), and GET ``/{id}``.
Every call must carry the project's Basic credentials (401 otherwise, as Sinch answers).

A fax goes QUEUED → IN_PROGRESS → COMPLETED | FAILURE after short delays, then its
FAX_COMPLETED callback is POSTed to its ``callbackUrl`` with the Basic credentials that URL
carries (Sinch signs nothing), as JSON or as a form. What happens is scripted per destination
number, one step per submission (see the constants below); unscripted faxes are delivered.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import re
import secrets
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from starlette.applications import Starlette
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.fax_servers.control import Outcome, Refusal, Submission, Switches

# Steps of a script, taken one per submission to the number.
DELIVER = "deliver"
BUSY = "busy"
NO_ANSWER = "no answer"
NOT_A_FAX = "not a fax"
INVALID = "invalid"  # refused at submit: 422, the number is not valid
RATE_LIMITED = "429"  # refused at submit with Retry-After; nothing recorded
SERVER_ERROR = "500"  # refused at submit; nothing recorded
TWICE = "twice"  # delivered, the callback POSTed twice with the same body
OUT_OF_ORDER = "out of order"  # the final callback before the submit is answered, a stale one after
BAD_AUTH = "bad auth"  # delivered, the callback carries wrong Basic credentials
SILENT = "silent"  # delivered, no callback at all (lost): only a GET tells
HOLD = "hold"  # stays QUEUED until ``finish`` is called
HANG = "hang"  # recorded and dialled, but the submit is never answered (until ``end_hangs``)

STEPS = {
    Outcome.DELIVERED: DELIVER,
    Outcome.BUSY: BUSY,
    Outcome.NO_ANSWER: NO_ANSWER,
    Outcome.NOT_A_FAX: NOT_A_FAX,
    Refusal.INVALID_NUMBER: INVALID,
    Refusal.RATE_LIMITED: RATE_LIMITED,
    Refusal.BROKEN: SERVER_ERROR,
    Refusal.HANG: HANG,
}
FAILURES = {
    BUSY: ("CALL_ERROR", 17, "Busy"),
    NO_ANSWER: ("CALL_ERROR", 30, "No answer from a fax machine"),
    NOT_A_FAX: ("FAX_ERROR", 132, "No fax tone detected"),
}
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ELSEWHERE = "+442079460999"  # where another deployment's faxes go (Ofcom's drama range)


def fax_id() -> str:
    return "".join(secrets.choice(CROCKFORD) for _ in range(26))


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Fax:
    id: str
    to: str
    pdf: bytes
    pages: int
    labels: dict[str, str]
    callback_url: str
    callback_type: str
    step: str
    created: dt.datetime
    status: str = "QUEUED"
    completed: dt.datetime | None = None
    error: tuple[str, int, str] | None = None
    held: asyncio.Event = field(default_factory=asyncio.Event)

    def view(self, project: str) -> dict[str, Any]:
        """The Fax object as Sinch returns it (credentials in the callback URL masked)."""
        parts = urlsplit(self.callback_url)
        host = parts.netloc.rpartition("@")[2]
        masked = urlunsplit((parts.scheme, f"{parts.username}:****@{host}", parts.path, "", ""))
        out: dict[str, Any] = {
            "id": self.id,
            "direction": "OUTBOUND",
            "from": "+15550100000",
            "to": self.to,
            "numberOfPages": self.pages,
            "status": self.status,
            "createTime": iso(self.created),
            "labels": dict(self.labels),
            "callbackUrl": masked if parts.password else self.callback_url,
            "callbackUrlContentType": self.callback_type,
            "projectId": project,
            "serviceId": "01SERVICE0000000000000000",
            "maxRetries": 0,
            "retryCount": 0,
            "headerText": "-",
            "hasFile": "true",
        }
        if self.completed:
            out["completedTime"] = iso(self.completed)
            out["pagesSentSuccessfully"] = self.pages if self.status == "COMPLETED" else 0
            out["price"] = {"currencyCode": "USD", "amount": f"{0.07 * self.pages:.4f}"}
        if self.error:
            out["errorType"], out["errorCode"], out["errorMessage"] = self.error
        return out


class SinchFake(Switches):
    def __init__(
        self,
        project: str = "project-1",
        key_id: str = "key-id",
        key_secret: str = "key-secret",  # noqa: S107
        delay: float = 0.05,
        retry_after: int = 1,
    ) -> None:
        self.project = project
        self.credentials = base64.b64encode(f"{key_id}:{key_secret}".encode()).decode()
        self.delay = delay
        self.retry_after = retry_after
        self.max_page_size = 1000
        self.faxes: dict[str, Fax] = {}
        self.scripts: dict[str, deque[str]] = defaultdict(deque)
        self.requests: list[tuple[str, str, int, float]] = []  # method, path, status, time
        self.callbacks: list[tuple[str, int]] = []  # fax id, our web app's answer
        self.refused_auth = 0
        self.refusals: dict[str, deque[str]] = defaultdict(deque)  # taken before ``scripts``
        self.calls: list[Submission] = []
        Switches.__init__(self)
        self._released = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        base = "/v3/projects/{project}/faxes"
        self.app = Starlette(
            routes=[
                Route(base, self.send, methods=["POST"]),
                Route(base, self.list, methods=["GET"]),
                Route(base + "/{id}", self.get, methods=["GET"]),
            ],
            lifespan=self._lifespan,
        )

    # scripting (from the test's thread) --------------------------------------------------------
    def script(self, to: str, *steps: str) -> None:
        self.scripts[to].extend(steps)

    def end_hangs(self) -> None:
        """Let hanging submissions end (their client is long gone)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._released.set)

    def finish(self, job: str) -> None:
        """A held fax goes on to be delivered."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.faxes[job].held.set)

    # the control API every fake offers (tests/support/fax_servers/control.py) --------------------------
    def outcome(self, number: str, *outcomes: Outcome) -> None:
        self.script(number, *(STEPS[o] for o in outcomes))

    def refuse_next(self, number: str, *refusals: Refusal) -> None:
        self.refusals[number].extend(STEPS[r] for r in refusals)

    def crowd(self, number: str, others: int) -> None:
        # Sinch's list has no filter by number: another deployment's faxes anywhere come first.
        self.max_page_size = 1
        later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
        for n in range(others):
            fax = Fax(fax_id(), ELSEWHERE, b"%PDF-", 1, {"reference": f"d{n}-x"}, "", "", "", later)
            self.faxes[fax.id] = fax

    def listed_pages(self) -> int:
        return len([p for m, p, _, _ in list(self.requests) if m == "GET" and p.endswith("/faxes")])

    def _ours(self, number: str) -> list[Fax]:
        return sorted((f for f in list(self.faxes.values()) if f.to == number), key=lambda f: f.created)

    def job_ids(self, number: str) -> list[str]:
        return [f.id for f in self._ours(number)]

    def job_states(self, number: str) -> list[str]:
        return [f.status for f in self._ours(number)]

    def references(self, number: str) -> list[str | None]:
        return [f.labels.get("reference") for f in self._ours(number)]

    def submissions(self, number: str) -> list[Submission]:
        return [c for c in list(self.calls) if c.to == number]

    def final_answers(self, number: str) -> list[int]:
        ids = set(self.job_ids(number))
        return [status for fax, status in list(self.callbacks) if fax in ids]

    def held_by(self, label: str) -> list[Fax]:
        return [f for f in list(self.faxes.values()) if label in f.labels.values()]

    def posts(self) -> list[tuple[str, str, int, float]]:
        return [r for r in self.requests if r[0] == "POST"]

    # the API ---------------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self._loop = asyncio.get_running_loop()
        yield
        for task in list(self._tasks):
            task.cancel()

    def _refusal(self, request: Request) -> Response | None:
        given = request.headers.get("authorization", "")
        if given != f"Basic {self.credentials}" or request.path_params["project"] != self.project:
            self.refused_auth += 1
            return JSONResponse({"code": "401", "error": "Unauthorized"}, status_code=401)
        return None

    def _answer(self, request: Request, response: Response) -> Response:
        self.requests.append((request.method, request.url.path, response.status_code, time.monotonic()))
        return response

    async def send(self, request: Request) -> Response:
        refused = self._refusal(request)
        if refused:
            return self._answer(request, refused)
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return self._answer(request, _error(400, "Bad Request", "expected a multipart upload"))
        async with request.form() as form:  # closed when done, and the upload's temporary file with it
            return await self._take(request, form)

    async def _take(self, request: Request, form: FormData) -> Response:
        to = str(form.get("to") or "")
        queue = self.refusals[to] if self.refusals[to] else self.scripts[to]
        step = queue.popleft() if queue else DELIVER
        problem = await self._check(form, to, step)
        if problem:
            self.calls.append(Submission(to, problem.status_code, time.monotonic()))
            return self._answer(request, problem)
        self.calls.append(Submission(to, 200, time.monotonic()))
        upload = form.get("file")
        assert isinstance(upload, UploadFile)
        pdf = await upload.read()
        labels = {
            k[7:-1]: str(v) for k, v in form.multi_items() if k.startswith("labels[") and k.endswith("]")
        }
        callback_type = str(form.get("callbackUrlContentType") or "multipart/form-data")
        created = dt.datetime.now(dt.UTC)
        pages = max(1, len(PAGE.findall(pdf)))
        fax = Fax(
            fax_id(), to, pdf, pages, labels, str(form.get("callbackUrl") or ""), callback_type, step, created
        )
        self.faxes[fax.id] = fax
        if step == OUT_OF_ORDER:
            await self._dial(fax)  # final callback answered before our submit is
        else:
            self._spawn(self._dial(fax))
        if step == HANG:
            await self._hang()
        return self._answer(request, JSONResponse(fax.view(self.project)))

    async def _check(self, form: Any, to: str, step: str) -> Response | None:
        if step == RATE_LIMITED:
            headers = {"Retry-After": str(self.retry_after)}
            return JSONResponse(
                {"code": "429", "error": "Too Many Requests"}, status_code=429, headers=headers
            )
        if step == SERVER_ERROR:
            return _error(500, "Internal Server Error", "something broke")
        if step == INVALID or not E164.match(to):
            return _error(
                422, "Invalid parameters", "invalid", (("to", f"The ({to}) is not a valid phone number"),)
            )
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            return _error(400, "Bad Request", "a file or contentUrl is required")
        head = await upload.read(5)
        await upload.seek(0)
        if head != b"%PDF-" or upload.content_type != "application/pdf":
            return _error(422, "Invalid parameters", "invalid", (("file", "not a PDF"),))
        return None

    async def _hang(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._released.wait(), 60)

    async def list(self, request: Request) -> Response:
        refused = self._refusal(request)
        if refused:
            return self._answer(request, refused)
        q = request.query_params
        since = q.get("createTime>")  # Sinch's createTime>=…, as a query parser reads it
        after = dt.datetime.fromisoformat(since) if since else dt.datetime.now(dt.UTC) - dt.timedelta(days=7)
        found = [
            f
            for f in sorted(self.faxes.values(), key=lambda f: f.created, reverse=True)
            if f.created >= after
            and q.get("direction", "OUTBOUND") == "OUTBOUND"
            and f.to.startswith(q.get("to", ""))
            and q.get("status", f.status) == f.status
        ]
        size = min(int(q.get("pageSize", 100)), 1000, self.max_page_size)
        page = int(q.get("page", 1))
        chunk = found[(page - 1) * size : page * size]
        body = {
            "faxes": [f.view(self.project) for f in chunk],
            "pageNumber": page,
            "pageSize": size,
            "totalItems": len(found),
            "totalPages": max(1, -(-len(found) // size)),
        }
        return self._answer(request, JSONResponse(body))

    async def get(self, request: Request) -> Response:
        refused = self._refusal(request)
        if refused:
            return self._answer(request, refused)
        fax = self.faxes.get(request.path_params["id"])
        if fax is None:
            return self._answer(request, _error(404, "Not Found", "The resource is not found"))
        return self._answer(request, JSONResponse(fax.view(self.project)))

    # the fax's life and its callbacks -------------------------------------------------------------
    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dial(self, fax: Fax) -> None:
        if fax.step == HOLD:
            await fax.held.wait()
        # The test's thread changes ``held``: no asyncio.Event of this loop can tell.
        while fax.to in self.held:  # noqa: ASYNC110
            await asyncio.sleep(self.delay)
        await asyncio.sleep(self.delay)
        fax.status = "IN_PROGRESS"
        stale = fax.view(self.project)
        await asyncio.sleep(self.delay)
        fax.error = FAILURES.get(fax.step)
        fax.status = "FAILURE" if fax.error else "COMPLETED"
        fax.completed = dt.datetime.now(dt.UTC)
        if fax.step == SILENT or fax.to in self.dropped:
            return
        body, content_type = self._callback_body(fax, fax.view(self.project))
        await self._post(fax, body, content_type, bad=fax.step == BAD_AUTH)
        if fax.step == TWICE or fax.to in self.repeated:
            await self._post(fax, body, content_type)
        if fax.step == OUT_OF_ORDER:
            self._spawn(self._stale(fax, stale))

    async def _stale(self, fax: Fax, view: dict[str, Any]) -> None:
        await asyncio.sleep(self.delay * 4)
        body, content_type = self._callback_body(fax, view)
        await self._post(fax, body, content_type)

    def _callback_body(self, fax: Fax, view: dict[str, Any]) -> tuple[bytes | dict[str, Any], str]:
        event = {"event": "FAX_COMPLETED", "eventTime": iso(dt.datetime.now(dt.UTC))}
        if fax.callback_type == "application/json":
            document = {**event, "fax": view, "file": base64.b64encode(fax.pdf).decode(), "fileType": "PDF"}
            return json.dumps(document).encode(), "application/json"
        return {**event, "fax": json.dumps(view)}, "multipart/form-data"

    async def _post(
        self, fax: Fax, body: bytes | dict[str, Any], content_type: str, bad: bool = False
    ) -> None:
        parts = urlsplit(fax.callback_url)
        host = parts.netloc.rpartition("@")[2]
        url = urlunsplit((parts.scheme, host, parts.path, parts.query, ""))
        password = "not-the-password" if bad else parts.password or ""
        token = base64.b64encode(f"{parts.username}:{password}".encode()).decode()
        headers = {"Authorization": f"Basic {token}", "User-Agent": "Sinch-Fax-Callback (fake)"}
        async with httpx.AsyncClient(timeout=10) as client:
            if isinstance(body, bytes):
                headers["Content-Type"] = content_type
                answer = await client.post(url, content=body, headers=headers)
            else:
                files = {"file": ("fax.pdf", fax.pdf, "application/pdf")}
                answer = await client.post(url, data=body, files=files, headers=headers)
        self.callbacks.append((fax.id, answer.status_code))


def _error(
    status: int, error: str, message: str, violations: tuple[tuple[str, str], ...] = ()
) -> JSONResponse:
    body: dict[str, Any] = {"code": str(status), "error": error, "message": message}
    if violations:
        body["details"] = {"fieldViolations": [{"field": f, "description": d} for f, d in violations]}
    return JSONResponse(body, status_code=status)
