"""The supporters' public pages: join (double opt-in), confirm, and withdraw.

Nothing about a person is kept as a supporter until they follow the emailed link and press
Confirm; a GET never changes anything, because mail scanners fetch the links in emails. No
answer tells whether an address is known: every valid form gets the same page, and the
confirmation email goes out after the response, so its time does not tell either. Visitors have
no session, so each form carries a signed, expiring token that must match a random value in a
cookie (double submit). Withdrawing works from its page, and in one click (RFC 8058) from a
mail client, with the signed link as the only credential.

Pages and emails speak the languages of the texts catalogue (dispatcher/letters/texts/, context
``join``: English, French, Spanish, German and Simplified Chinese); ``?lang=`` or Accept-Language
picks the page's language by its policy, the supporter's chosen language the emails'.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import hashlib
import hmac
import json
import logging
import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dispatcher.actions.model import Action
from dispatcher.actions.planner import effective
from dispatcher.language import parse_language
from dispatcher.letters.texts import JOIN, language_for, texts
from dispatcher.letters.texts import offered as offering
from dispatcher.models import WORDS_LIMIT, ActionStatus, SupporterRecord, Terms
from dispatcher.people import fields, notices, tokens
from dispatcher.people.fields import CHANNELS, REPLIES, TERRITORIES, FieldError, KnownScopes
from dispatcher.settings import Settings
from dispatcher.web.auth import address
from dispatcher.web.context import Context, context
from dispatcher.web.limits import client_key
from dispatcher.web.pages import render

log = logging.getLogger("dispatcher.web")

EXPIRIES = ("none", "3", "6", "12")  # months after confirming
CAP_MAX = 100  # what a supporter chooses for themselves; a CRM may set up to fields.MONTHLY_CAP
RAW_LIMIT = 10_000  # of any field: more is refused as too long, never processed whole
SINGLE = ("name", "email", "city", "country", "language", "scope", "display", "cap", "expiry")
SINGLE_MORE = ("receipts", "words", "agree", "replies")
MANY = ("tags", "channels", "sign")
FORM_COOKIE = "dispatcher_form"
FORM_SALT = "public-form"
FORM_AGE = dt.timedelta(hours=6)  # long enough to read the consent text and think it over
LANGS = offering(JOIN)  # the languages these pages and their emails speak


# The page's language ---------------------------------------------------------------------------
def _match(tag: str) -> str | None:
    return language_for(tag.strip(), JOIN)


def _accepted(header: str) -> list[str]:
    """Accept-Language's tags, most wanted first (ties keep the header's order)."""
    ranked: list[tuple[float, int, str]] = []
    for n, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.partition(";")
        weight = params.strip()
        try:
            q = float(weight[2:]) if weight.startswith("q=") else 1.0
        except ValueError:
            q = 0.0
        if tag.strip() and q > 0:
            ranked.append((-q, n, tag.strip()))
    return [tag for _, _, tag in sorted(ranked)]


def page_language(request: Request, form: FormData | None = None) -> str:
    """The form's own choice, then ``?lang=``, then the browser's preferences, then English."""
    chosen = [form.get("ui") if form else None, request.query_params.get("lang")]
    wanted = [c for c in chosen if isinstance(c, str)] + _accepted(request.headers.get("accept-language", ""))
    return next((found for tag in wanted if (found := _match(tag))), "en")


def text_for(language: str) -> dict[str, str]:
    """The page's words as a plain dict, for the checks; templates get the catalogue's view."""
    return dict(texts(language, JOIN))


# Pages and their form tokens -------------------------------------------------------------------
def _serializer(ctx: Context) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(ctx.store.instance_secret(), salt=FORM_SALT)


def _nonce(request: Request) -> str:
    held = request.cookies.get(FORM_COOKIE, "")
    return held if 20 <= len(held) <= 64 and held.isascii() else secrets.token_urlsafe(24)


def form_ok(request: Request, form: FormData) -> bool:
    """The form came from one of our pages, in this browser, in the last hours."""
    held, sent = request.cookies.get(FORM_COOKIE, ""), form.get("form_token")
    if not held or not isinstance(sent, str):
        return False
    try:
        value = _serializer(context(request)).loads(sent, max_age=int(FORM_AGE.total_seconds()))
    except BadSignature:  # forged, or expired (SignatureExpired is one)
        return False
    return isinstance(value, str) and hmac.compare_digest(value.encode(), held.encode())


def _org(settings: Settings) -> str:
    name, mailbox = parseaddr(settings.sender)
    return name or mailbox


def _page(request: Request, template: str, ui: str, status: int = 200, **values: Any) -> Response:
    """A public page in ``ui``, with a fresh form token bound to the visitor's cookie."""
    ctx, nonce = context(request), _nonce(request)
    t = texts(ui, JOIN)
    switch = [(lang, texts(lang, JOIN)["lang_name"]) for lang in LANGS]
    # After a POST (a form sent, a link used) the page in another language is the general form:
    # the same address again would show a used link's button, or a blank form.
    here = request.url.path if request.method == "GET" else "/join"
    token = _serializer(ctx).dumps(nonce)
    response = render(
        request,
        template,
        status,
        ui=ui,
        t=t,
        org=_org(ctx.settings),
        switch=switch,
        here=here,
        form_token=token,
        **values,
    )
    secure = (ctx.settings.public_url or "").startswith("https:")
    age = int(FORM_AGE.total_seconds())
    response.set_cookie(FORM_COOKIE, nonce, max_age=age, httponly=True, samesite="strict", secure=secure)
    response.headers["Referrer-Policy"] = "no-referrer"  # the address may hold a signed link
    return response


def _message(
    request: Request, ui: str, key: str, status: int = 200, link: tuple[str, str] | None = None
) -> Response:
    """A page of words only: its title and paragraphs are ``<key>_title``, ``_body``, ``_more``."""
    return _page(request, "optin_message.html", ui, status, key=key, link=link)


# What a form may choose from -------------------------------------------------------------------
@dataclass(frozen=True)
class Offer:
    """The action a form is for (None: the general form), the campaign tags of the open actions
    with their titles, the languages their letters are written in, and the channels offered
    (an action's own; every channel for the general form, which covers actions to come)."""

    action: Action | None
    tags: dict[str, list[str]]
    languages: list[str]
    channels: list[str]


def _open_actions(ctx: Context) -> list[Action]:
    states, now = ctx.store.action_states(), ctx.clock()
    live = (ActionStatus.ACTIVE, ActionStatus.PAUSED)
    return [a for a in ctx.actions().values() if effective(a, states.get(a.id), now).status in live]


def _offer(ctx: Context, action_id: str | None) -> Offer | None:
    """None: no such action, or not open to supporters (a draft, closed, past its deadline)."""
    actions = _open_actions(ctx)
    if action_id is not None:
        actions = [a for a in actions if a.id == action_id]
        if not actions:
            return None
    tags: dict[str, list[str]] = {}
    for action in actions:
        for tag in action.tags:
            tags.setdefault(tag, []).append(action.title)
    languages = sorted({lang for a in actions for lang in a.languages})
    used = {c for a in actions for t in a.targets for c in t.channels}
    channels: list[str] = [c for c in CHANNELS if c in used] if action_id else list(CHANNELS)
    return Offer(actions[0] if action_id else None, dict(sorted(tags.items())), languages, channels)


def _fold(name: str) -> str:
    """Sort key: accents aside, so Åland sits with the A's."""
    return "".join(c for c in unicodedata.normalize("NFD", name) if not unicodedata.combining(c)).casefold()


@functools.cache
def _countries(ui: str) -> tuple[tuple[str, str], ...]:
    names = parse_language(ui).territories
    return tuple(sorted(((c, str(names.get(c, c))) for c in TERRITORIES), key=lambda p: _fold(p[1])))


@functools.cache
def _language_name(tag: str, ui: str) -> str:
    return str(parse_language(tag).get_display_name(parse_language(ui)) or tag)


def _form_page(
    request: Request, ui: str, offer: Offer, values: dict[str, Any], errors: dict[str, str], status: int = 200
) -> Response:
    ctx = context(request)
    return _page(
        request,
        "optin.html",
        ui,
        status,
        offer=offer,
        v=values,
        errors=errors,
        countries=_countries(ui),
        own=[(lang, texts(lang, JOIN)["lang_name"]) for lang in LANGS],
        signs=[(lang, _language_name(lang, ui)) for lang in offer.languages],
        expiries=EXPIRIES,
        receipts=fields.RECEIPTS,
        words_limit=WORDS_LIMIT,
        cap_max=CAP_MAX,
        version=ctx.settings.consent_text_version,
    )


# Reading and checking a form -------------------------------------------------------------------
def defaults(ui: str, offer: Offer) -> dict[str, Any]:
    blank: dict[str, Any] = {key: "" for key in (*SINGLE, *SINGLE_MORE)}
    chosen = {"language": ui, "scope": "all", "display": "full", "expiry": "none", "receipts": "off"}
    chosen["replies"] = REPLIES[0]  # organisation: asked, never assumed to be direct
    return {**blank, **chosen, "tags": [], "channels": list(offer.channels), "sign": []}


def form_values(form: FormData) -> dict[str, Any]:
    """What was sent, as typed (to show again), each field cut at ``RAW_LIMIT``."""
    values: dict[str, Any] = {}
    for key in (*SINGLE, *SINGLE_MORE):
        value = form.get(key)
        values[key] = value[:RAW_LIMIT] if isinstance(value, str) else ""
    for key in MANY:
        values[key] = [v[:64] for v in form.getlist(key) if isinstance(v, str)][:50]
    return values


def _problem(exc: FieldError, t: dict[str, str]) -> str:
    """A name's or a city's problem in the page's language."""
    if exc.kind == "empty":
        return t["err_name"]
    if exc.kind == "long":
        return t["err_long"].format(limit=fields.LIMITS[exc.field])
    return t["err_characters"]


def _check_person(v: dict[str, Any], t: dict[str, str], errors: dict[str, str]) -> dict[str, Any]:
    person: dict[str, Any] = {}
    for key, required in (("name", True), ("city", False)):
        try:
            person[key] = fields.text(v[key], key, required)
        except FieldError as exc:
            errors[key], person[key] = _problem(exc, t), ""
    # The fields' own rules; the problems are worded here, in the page's language.
    for key, parse, problem in (
        ("email", fields.email, "err_email"),
        ("country", fields.country, "err_choice"),
    ):
        try:
            person[key] = parse(v[key])
        except FieldError:
            errors[key] = t[problem]
    try:
        person["language"] = fields.language(v["language"])
    except FieldError:
        person["language"] = ""
    if person["language"] not in LANGS:  # the languages these pages and their emails speak
        errors["language"] = t["err_choice"]
    return person


def _check_scope(v: dict[str, Any], offer: Offer, t: dict[str, str], errors: dict[str, str]) -> list[str]:
    """The form's action, all actions, or campaign tags among those of the open actions."""
    if offer.action is not None:
        return [offer.action.id]
    chosen = {"all": ["all"], "tags": [f"tag:{tag}" for tag in v["tags"]]}.get(v["scope"], [])
    try:
        return list(fields.scopes(chosen, KnownScopes(tags=frozenset(offer.tags))))
    except FieldError:
        errors["scope"] = t["err_scope"]
        return []


def _check_cap(text: str) -> tuple[int | None, bool]:
    """(the cap or None for none, whether the text was a whole number from 1 to CAP_MAX or empty)."""
    # Digits from any keyboard: full-width ones, as typed with a Chinese or Japanese one.
    digits = "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c for c in text)
    try:
        return fields.monthly_cap(digits, CAP_MAX), True
    except FieldError:
        return None, False


def _listed(
    key: str, parse: Callable[[list[str]], tuple[str, ...]], offered: list[str], v: dict[str, Any]
) -> list[str]:
    """Ticked boxes by the field's rule, or FieldError; a box the page did not offer is one."""
    chosen = list(parse(v[key]))
    if any(item not in offered for item in chosen):
        raise FieldError(key, "invalid", f"{key}: not offered")
    return chosen


def _check_lists(
    v: dict[str, Any], offer: Offer, t: dict[str, str], errors: dict[str, str]
) -> dict[str, Any]:
    terms: dict[str, Any] = {"channels": [], "languages": []}
    for key, name, parse, offered, problem in (
        ("channels", "channels", fields.channels, offer.channels, "err_channels"),
        ("sign", "languages", fields.languages, offer.languages, "err_choice"),
    ):
        try:
            terms[name] = _listed(key, parse, offered, v)
        except FieldError:
            errors[key] = t[problem]
    return terms


def _choose(value: str, name: str, allowed: tuple[str, ...], default: str = "") -> str:
    """A radio button's value by the field's rule (the default when none was sent); "" if refused."""
    try:
        return fields.choice(name, allowed)(value) or default
    except FieldError:
        return ""


def _check_terms(
    v: dict[str, Any], offer: Offer, t: dict[str, str], errors: dict[str, str]
) -> dict[str, Any]:
    terms = _check_lists(v, offer, t, errors)
    v["replies"] = v["replies"] or REPLIES[0]  # shown again as the choice made
    chosen = {
        "name_display": _choose(v["display"], "name_display", fields.NAME_DISPLAYS),
        "receipts": _choose(v["receipts"], "receipts", fields.RECEIPTS),
        # Not asked where no letter goes by email (a fax carries no address to reply to).
        "replies": _choose(v["replies"], "replies", REPLIES, REPLIES[0]),
    }
    for key, name in (("display", "name_display"), ("receipts", "receipts"), ("replies", "replies")):
        if not chosen[name]:
            errors[key] = t["err_choice"]
    if v["expiry"] not in EXPIRIES:
        errors["expiry"] = t["err_choice"]
    cap, ok = _check_cap(v["cap"])
    if not ok:
        errors["cap"] = t["err_cap"].format(max=CAP_MAX)
    return {
        **terms,
        **chosen,
        "monthly_cap": cap,
        "expiry_months": int(v["expiry"]) if v["expiry"] in EXPIRIES[1:] else None,
    }


def _check_words(
    v: dict[str, Any], offer: Offer, t: dict[str, str], errors: dict[str, str]
) -> dict[str, str]:
    if offer.action is None or not v["words"].strip():
        return {}
    try:
        words = fields.words(v["words"])
    except ValueError:
        errors["words"] = t["err_words"].format(limit=WORDS_LIMIT)
        return {}
    return {offer.action.id: words} if words else {}


def check(
    v: dict[str, Any], offer: Offer, ui: str, settings: Settings, now: dt.datetime
) -> tuple[dict[str, Any], dict[str, str]]:
    """The form as it is kept until confirmed, and the problems by field (in ``ui``)."""
    t, errors = text_for(ui), dict[str, str]()
    form = _check_person(v, t, errors)
    form["scopes"] = _check_scope(v, offer, t, errors)
    form.update(_check_terms(v, offer, t, errors))
    form["words"] = _check_words(v, offer, t, errors)
    if v["agree"] != "yes":
        errors["agree"] = t["err_agree"]
    form.update(text_version=text_version(settings, ui), posted_at=now.isoformat())
    return form, errors


def text_version(settings: Settings, ui: str) -> str:
    """The version label of the consent text, its language, and a digest of the words shown:
    an edit of the text without a new label still records which words were agreed to."""
    words = text_for(ui)["consent_text"].format(org=_org(settings))
    return f"{settings.consent_text_version} {ui} {hashlib.sha256(words.encode()).hexdigest()[:8]}"


def _months_after(when: dt.datetime, months: int) -> dt.datetime:
    index = when.month - 1 + months
    year, month = when.year + index // 12, index % 12 + 1
    return when.replace(year=year, month=month, day=min(when.day, calendar.monthrange(year, month)[1]))


def record_of(payload: str, now: dt.datetime) -> SupporterRecord:
    """The supporter and consent a confirmed form stands for; the expiry runs from now."""
    form = json.loads(payload)
    months = form["expiry_months"]
    terms = Terms(
        channels=tuple(form["channels"]),
        languages=tuple(form["languages"]),
        name_display=form["name_display"],
        # A form waiting for its link since before the question was asked: the safe choice.
        replies=form.get("replies", REPLIES[0]),
        monthly_cap=form["monthly_cap"],
        expires_at=None if months is None else _months_after(now, int(months)),
        text_version=form["text_version"],
    )
    return SupporterRecord(
        email=form["email"],
        name=form["name"],
        language=form["language"],
        city=form["city"],
        country=form["country"],
        scopes=tuple(form["scopes"]),
        opted_in_at=dt.datetime.fromisoformat(form["posted_at"]),
        source="form",
        terms=terms,
        confirmed_at=now,
        receipts=form["receipts"],
        words=dict(form["words"]),
    )


# The confirmation email ------------------------------------------------------------------------
def _what(offer: Offer, scopes: list[str], t: dict[str, str]) -> str:
    if offer.action is not None:
        return t["what_action"].format(title=offer.action.title)
    if scopes == ["all"]:
        return t["what_all"]
    return t["what_tags"].format(tags=", ".join(s.removeprefix("tag:") for s in scopes))


def confirmation(ctx: Context, base: str, form: dict[str, Any], what: str, opt_in: int) -> notices.Notice:
    lang, secret = form["language"], ctx.store.instance_secret()
    t = text_for(lang)
    # The links name the supporter's language, so the pages they open speak it.
    confirm = f"{base}/join/confirm/{tokens.sign(secret, tokens.CONFIRM, opt_in)}?lang={lang}"
    revoke = tokens.revoke_link(base, secret, form["email"], lang)
    org = _org(ctx.settings)
    body = t["mail_body"].format(name=form["name"], org=org, what=what, confirm=confirm, revoke=revoke) + "\n"
    return notices.Notice(
        form["name"], form["email"], lang, t["mail_subject"], _with_replies(body, form, t, org), revoke
    )


def _with_replies(body: str, form: dict[str, Any], t: dict[str, str], org: str) -> str:
    """The body, saying after who asked that the officials would get the address, if so chosen:
    anyone can fill in the form with someone else's address, and the one who confirms must read
    that choice and its risk (the form alone showed them to whoever filled it in)."""
    if form.get("replies") != "direct" or "email" not in form["channels"]:
        return body
    paragraphs = body.split("\n\n")
    chosen = f"{t['replies']}: {t['replies_direct']}.\n{t['replies_risk'].format(org=org)}"
    return "\n\n".join([*paragraphs[:2], chosen, *paragraphs[2:]])


async def send_confirmation(ctx: Context, notice: notices.Notice, opt_in: int) -> None:
    """Runs after the response has gone: a failure is for the operators' log, not the visitor.
    The form is dropped, so the person can ask again at once rather than in an hour."""
    try:
        await notices.send(ctx.settings, [notice], ctx.clock())
    except Exception as exc:  # whatever it is, the visitor's page has already been answered
        detail = str(exc).replace(notice.email, "<the supporter>")
        log.warning(
            "opt-in %d: the confirmation email was not sent: %s: %s", opt_in, type(exc).__name__, detail
        )
        await run_in_threadpool(ctx.store.people.discard_opt_ins, notice.email)


# The pages -------------------------------------------------------------------------------------
def _not_open(request: Request, ui: str) -> Response:
    return _message(request, ui, "closed", 404, link=("/join", text_for(ui)["join_general"]))


def _unavailable(request: Request, ui: str) -> Response | None:
    """Without the configured public URL, the emailed links could only be built from the
    request's Host header, which the sender chooses: a form posted with a forged Host would send
    a stranger our email with a link to another site. So no form at all until it is set."""
    if context(request).settings.public_url:
        return None
    return _message(request, ui, "unavailable", 503)


async def join_page(request: Request) -> Response:
    ctx, ui = context(request), page_language(request)
    if refused := _unavailable(request, ui):
        return refused
    offer = await run_in_threadpool(_offer, ctx, request.path_params.get("action_id"))
    if offer is None:
        return _not_open(request, ui)
    return _form_page(request, ui, offer, defaults(ui, offer), {})


async def join(request: Request) -> Response:
    ctx, form = context(request), await request.form()
    ui, values = page_language(request, form), form_values(form)
    if refused := _unavailable(request, ui):
        return refused
    offer = await run_in_threadpool(_offer, ctx, request.path_params.get("action_id"))
    if offer is None:
        return _not_open(request, ui)
    if not form_ok(request, form):  # shown again, nothing done: a forged post achieves nothing
        return _form_page(request, ui, offer, values, {"form": text_for(ui)["err_refresh"]}, 403)
    where = client_key(address(request))
    if wait := ctx.joins_by_address.blocked(where):
        response = _message(request, ui, "limited", 429)
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    payload, errors = check(values, offer, ui, ctx.settings, ctx.clock())
    if errors:
        return _form_page(request, ui, offer, values, {"form": text_for(ui)["err_form"], **errors}, 400)
    ctx.joins_by_address.hit(where)
    return await _accept(request, ui, offer, payload)


async def _accept(request: Request, ui: str, offer: Offer, form: dict[str, Any]) -> Response:
    """The same page for every valid form: whether an email goes out is never shown."""
    ctx = context(request)
    response = _message(request, ui, "sent")
    # The window holds a digest, not the address: nothing to read in a memory dump.
    key = hashlib.sha256(form["email"].encode()).hexdigest()
    if ctx.joins_by_email.blocked(key):
        return response
    ctx.joins_by_email.hit(key)
    made = await run_in_threadpool(ctx.store.people.open_opt_in, form["email"], json.dumps(form), ctx.clock())
    if made is not None:
        what = _what(offer, form["scopes"], text_for(form["language"]))
        assert ctx.settings.public_url  # _unavailable refused the form otherwise
        notice = confirmation(ctx, ctx.settings.public_url.rstrip("/"), form, what, made)
        response.background = BackgroundTask(send_confirmation, ctx, notice, made)
    return response


def _token(request: Request, purpose: str) -> str | int | None:
    return tokens.read(context(request).store.instance_secret(), purpose, request.path_params["token"])


def _bad_link(request: Request, ui: str, purpose: str) -> Response:
    """A link whose signature or age fails; a confirmation's leads to the form again."""
    if purpose == tokens.CONFIRM:
        return _message(request, ui, "invalid", 400, link=("/join", text_for(ui)["join_again"]))
    return _message(request, ui, "invalid_revoke", 400)


def _button(request: Request, ui: str, key: str, refused: bool = False) -> Response:
    """The page of one button (``key``: confirm, revoke); ``refused``: pressed without the page's
    form token, so shown again with why."""
    if not refused:
        return _page(request, "button.html", ui, key=key)
    return _page(request, "button.html", ui, 403, key=key, problem=text_for(ui)["err_button"])


def _button_page(request: Request, purpose: str, signs: type[int | str], key: str) -> Response:
    """Only a button: mail scanners fetch links, and a fetch must not give or take back consent.
    ``signs``: what the link's token holds for ``purpose`` (an opt-in id, an address)."""
    ui = page_language(request)
    if not isinstance(_token(request, purpose), signs):
        return _bad_link(request, ui, purpose)
    return _button(request, ui, key)


async def confirm_page(request: Request) -> Response:
    return _button_page(request, tokens.CONFIRM, int, "confirm")


async def confirm(request: Request) -> Response:
    ctx, form = context(request), await request.form()
    ui = page_language(request, form)
    opt_in = _token(request, tokens.CONFIRM)
    if not isinstance(opt_in, int):
        return _bad_link(request, ui, tokens.CONFIRM)
    if not form_ok(request, form):
        return _button(request, ui, "confirm", refused=True)
    now = ctx.clock()
    record = await run_in_threadpool(
        ctx.store.people.confirm_opt_in, opt_in, now, functools.partial(record_of, now=now)
    )
    if record is None:
        return _message(request, ui, "used", 410)
    log.info("opt-in %d confirmed: a supporter's consent was recorded", opt_in)
    secret = ctx.store.instance_secret()
    return _page(request, "confirm_done.html", ui, revoke=tokens.revoke_link("", secret, record.email, ui))


async def revoke_page(request: Request) -> Response:
    return _button_page(request, tokens.REVOKE, str, "revoke")


async def revoke(request: Request) -> Response:
    """The same answer whether or not the address had a consent."""
    ctx, form = context(request), await request.form()
    ui = page_language(request, form)
    email = _token(request, tokens.REVOKE)
    if not isinstance(email, str):
        return _bad_link(request, ui, tokens.REVOKE)
    # RFC 8058: a mail client's one-click POST has no cookie and no form token; the signed link
    # is what shows it comes from the person's own mailbox.
    one_click = form.get("List-Unsubscribe") == "One-Click"
    if not one_click and not form_ok(request, form):
        return _button(request, ui, "revoke", refused=True)
    await run_in_threadpool(ctx.store.people.revoke, email, ctx.clock(), "link")
    return _page(request, "revoke_done.html", ui)


routes = [
    Route("/join", join_page, methods=["GET"]),
    Route("/join", join, methods=["POST"]),
    Route("/join/confirm/{token}", confirm_page, methods=["GET"]),
    Route("/join/confirm/{token}", confirm, methods=["POST"]),
    Route("/join/{action_id}", join_page, methods=["GET"]),
    Route("/join/{action_id}", join, methods=["POST"]),
    Route("/revoke/{token}", revoke_page, methods=["GET"]),
    Route("/revoke/{token}", revoke, methods=["POST"]),
]
