"""A small JSON API for CRMs: record a supporter's consent, read it back, withdraw it.

``POST /api/consents`` takes what a row of the CSV import holds, as JSON (lists instead of
``;``-separated text), and the supporter's own words per action; it is checked by the importer's
own row validation, so the two accept the same things (each field's rule is in ``people.fields``,
which the opt-in form uses too). The CRM vouches that the supporter confirmed, as an import does.
``GET /api/consents/{email}`` answers the person's consents and their history;
``DELETE /api/consents/{email}`` withdraws every consent and cancels the letters not yet sent.

Every request wants ``Authorization: Bearer TOKEN`` with the token from ``DISPATCHER_API_TOKEN``;
without that setting the API does not exist (404). A bearer token is never sent by a browser on
its own, so there is no CSRF to guard against, and no cookie is read.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from functools import wraps
from typing import Any

from pydantic import SecretStr
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dispatcher.models import SupporterRecord
from dispatcher.people import fields
from dispatcher.people.csv_import import COLUMNS, OPTIONAL, RowError, parse_row
from dispatcher.people.fields import KnownScopes
from dispatcher.settings import Settings
from dispatcher.store import consent
from dispatcher.store.accounts import AuditEntry
from dispatcher.web.auth import address
from dispatcher.web.bearer import refusal
from dispatcher.web.context import context

log = logging.getLogger("dispatcher.web")

Endpoint = Callable[[Request], Awaitable[Response]]
BODY_LIMIT = 64 * 1024  # a consent is a few hundred bytes; its words at most a few thousand
LISTS = ("scope", "channels", "languages")  # ";"-separated in the CSV, JSON arrays here
NUMBERS = ("monthly_cap",)
FIELDS = (*COLUMNS, *OPTIONAL, "words")
ACTOR = "api"  # who the audit log and the consent events name


def _json(body: object, status: int = 200, headers: Mapping[str, str] | None = None) -> JSONResponse:
    # What the API answers is about people: no cache, proxy or browser keeps a copy.
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store", **(headers or {})})


def _api_token(settings: Settings) -> SecretStr | None:
    return settings.api_token


def _unauthorised(challenge: Mapping[str, str]) -> Response:
    return _json({"error": "a bearer token is needed"}, 401, challenge)


def bearer_only(endpoint: Endpoint) -> Endpoint:
    """The endpoint for a request carrying the API token; 404 when no token is set, as for any
    path that does not exist, and 401 for a missing or wrong one."""

    @wraps(endpoint)
    async def checked(request: Request) -> Response:
        refused = refusal(request, _api_token, "api", _unauthorised)
        if refused is not None:
            return refused
        try:
            return await endpoint(request)
        except SQLAlchemyError as exc:
            # The error's text may quote the statement's parameters, people's details among them.
            log.error("api: the store did not answer: %s", type(exc).__name__)
            return _json({"error": "store unavailable"}, 503)

    return checked


async def _body(request: Request) -> bytes | None:
    """The request body, or None when it is larger than BODY_LIMIT (read no further then)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > BODY_LIMIT:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > BODY_LIMIT:
            return None
    return bytes(body)


def _text_value(name: str, value: object, problems: dict[str, str]) -> str:
    """One field as the CSV would hold it; a field of the wrong type is a problem."""
    if name in LISTS:
        items = value if isinstance(value, list) else None
        if items is None or not all(isinstance(i, str) for i in items):
            problems[name] = f"{name} must be a list of strings"
        elif any(";" in i for i in items):
            problems[name] = f"{name}: an item contains ';'"
        else:
            return ";".join(items)
    elif name in NUMBERS:
        # bool is an int to Python, not to a CRM that sent true.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        problems[name] = f"{name} must be a whole number"
    elif isinstance(value, str):
        return value
    else:
        problems[name] = f"{name} must be a string"
    return ""


def _row(body: Mapping[str, object]) -> tuple[dict[str, str], dict[str, str]]:
    """The body as a CSV row for the importer, and the problems of its shape."""
    problems = {name: "unknown field" for name in body if name not in FIELDS}
    row: dict[str, str] = {}
    for name in (*COLUMNS, *OPTIONAL):
        value = body.get(name)
        if value is None:
            if name in COLUMNS:
                problems[name] = f"{name} is missing"
            continue
        row[name] = _text_value(name, value, problems)
    return row, problems


def _words(value: object, known: KnownScopes, problems: dict[str, str]) -> dict[str, str]:
    """Action id → the supporter's own paragraph, as plain text (markup removed)."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        problems["words"] = "words must be an object of action ids and texts"
        return {}
    words: dict[str, str] = {}
    for action_id, text in value.items():
        if action_id not in known.actions:
            problems[f"words.{action_id[:128]}"] = "unknown action id"
            continue
        try:
            words[action_id] = fields.words(text)
        except ValueError as exc:
            problems[f"words.{action_id}"] = str(exc)
    return words


def consent_of(body: Mapping[str, object], known: KnownScopes, now: dt.datetime) -> SupporterRecord:
    """The body as a supporter's confirmed consent from the API, or ``RowError`` naming each bad
    field; a field's problem with its type wins over what the importer says of it then."""
    row, problems = _row(body)
    words = _words(body.get("words"), known, problems)
    try:
        record = parse_row(row, known, now)
    except RowError as exc:
        problems = {**exc.problems, **problems}
    if problems:
        raise RowError(problems)
    return dataclasses.replace(record, source=ACTOR, words=words)


def _scopes_held(held: Mapping[str, Any], now: dt.datetime) -> list[str]:
    return sorted({c["scope"] for c in held["consents"] if _state(c, now) == "live"})


@bearer_only
async def create(request: Request) -> Response:
    ctx = context(request)
    raw = await _body(request)
    if raw is None:
        return _json({"error": f"the body is larger than {BODY_LIMIT // 1024} KiB"}, 413)
    try:
        # JSON between systems is UTF-8 (RFC 8259); json.loads would also guess UTF-16 and -32.
        body = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # not UTF-8, not JSON, a number too long, nested too deep
        return _json({"error": "the body is not JSON"}, 400)
    if not isinstance(body, dict):
        return _json({"errors": {"body": "the body must be a JSON object"}}, 422)
    try:
        record = consent_of(body, KnownScopes.of(ctx.actions().values()), ctx.clock())
    except RowError as exc:
        return _json({"errors": exc.problems}, 422)
    await run_in_threadpool(ctx.store.import_supporters, [record], ctx.clock())
    held = await run_in_threadpool(ctx.store.people.export, record.email)
    # The scopes the person's live consents cover now: one given before their last revocation
    # is not recorded (the store's rule), and the CRM sees that here.
    return _json(
        {"email": record.email, "consents": _scopes_held(held or {"consents": []}, ctx.clock())}, 201
    )


def _address(request: Request) -> str:
    """The email in the path, as the importer stores it; unchanged if it is not one."""
    given = str(request.path_params["email"])[: fields.LIMITS["email"]]
    try:
        return fields.email(given)
    except ValueError:
        return given


TIMES = ("revoked_at", "ended_at", "expires_at")


def _state(row: Mapping[str, Any], now: dt.datetime) -> str:
    """An export's consent (times in ISO form) in the store's word for it."""
    revoked, ended, expires = (row[k] and dt.datetime.fromisoformat(row[k]) for k in TIMES)
    return consent.state(revoked, ended, expires, now)


def _consent(row: Mapping[str, Any], now: dt.datetime) -> dict[str, Any]:
    def listed(value: str, sep: str) -> list[str] | None:
        return None if value == "*" else value.split(sep)  # None: not restricted

    state = _state(row, now)
    return {
        "scope": row["scope"],
        "state": state,
        "channels": listed(row["channels"], ","),
        "languages": listed(row["languages"], " "),
        **{
            k: row[k]
            for k in ("name_display", "replies", "monthly_cap", "expires_at", "source", "opted_in_at")
        },
        "consent_version": row["text_version"],
        **{k: row[k] for k in ("confirmed_at", "revoked_at", "ended_at")},
    }


@bearer_only
async def show(request: Request) -> Response:
    ctx, email = context(request), _address(request)
    held = await run_in_threadpool(ctx.store.people.export, email)
    if held is None:
        return _json({"error": "no supporter with that email"}, 404)
    events = [{k: e[k] for k in ("at", "kind", "source", "detail")} for e in held["consent_events"]]
    return _json(
        {
            "email": held["email"],
            "receipts": held["receipts"],
            "consents": [_consent(c, ctx.clock()) for c in held["consents"]],
            "events": events,
        }
    )


@bearer_only
async def revoke(request: Request) -> Response:
    ctx, email = context(request), _address(request)
    cancelled = await run_in_threadpool(ctx.store.people.revoke, email, ctx.clock(), ACTOR)
    if cancelled is None:
        return _json({"error": "no supporter with that email"}, 404)
    # As from the CLI and the dashboard: the audit log names nobody ("forget" must leave no trace).
    detail = f"{cancelled} unsent letters cancelled"
    entry = AuditEntry(ctx.clock(), ACTOR, address(request), "consent revoked", "a supporter", detail)
    await run_in_threadpool(ctx.store.accounts.audit, entry)
    return _json({"cancelled": cancelled})


routes = [
    Route("/api/consents", create, methods=["POST"]),
    Route("/api/consents/{email:path}", show, methods=["GET"]),
    Route("/api/consents/{email:path}", revoke, methods=["DELETE"]),
]
