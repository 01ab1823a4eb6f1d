"""A Twilio-shaped fax API: SignalWire's Compatibility (LaML) API today, Twilio's own until 2021.

The API has no field a client can tag a fax with, so our reference rides in the ``MediaUrl``
query (``?ref=…``): the provider lists it back as the fax's ``media_url``, which is how ``find``
recognises our fax after a crash. A provider that rewrites ``media_url`` to its own copy defeats
this (the README says so).

Status callbacks are signed the Twilio way (HMAC-SHA1 over the URL and the sorted form fields)
with no timestamp: a replay is recognised by its signature, which the web app remembers.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urljoin, urlsplit

import httpx
from twilio.request_validator import RequestValidator

from dispatcher.models import ProviderEvent
from dispatcher.providers import ProviderError, Verified, Webhook, WebhookRefused, require
from dispatcher.providers.http import HttpProvider
from dispatcher.providers.media import MediaHost
from dispatcher.settings import Settings
from dispatcher.store.failures import Failure

log = logging.getLogger("dispatcher.fax")

WEBHOOK_PATH = "/webhooks/fax/twilio"
SIGNATURE_HEADERS = ("x-twilio-signature", "x-signalwire-signature")
UNDER_WAY = frozenset({"queued", "processing", "sending", "receiving"})
ENDED = {
    "busy": Failure.BUSY,
    "no-answer": Failure.NO_ANSWER,
    "canceled": Failure.CANCELLED,
    "cancelled": Failure.CANCELLED,  # some clients spell it so; the API does not
}
# A fax in one of these states did not get through: a later attempt must send a new one.
DID_NOT_GO = frozenset({*ENDED, "failed"})
PAGE_SIZE = 1000  # the most the list endpoint returns at once
MAX_LIST_PAGES = 50  # find() gives up scanning beyond this many pages (and says so)

# ErrorCode of a failed fax, or the code of a refused request.
CODES: dict[int, Failure] = {
    # Twilio Programmable Fax
    34002: Failure.BUSY,
    34003: Failure.NO_ANSWER,
    34004: Failure.PROVIDER,  # a poor line, or the far end hung up early: worth another try
    34005: Failure.ACCOUNT,  # Twilio's own fax API is closed: the base URL points at Twilio
    34108: Failure.DOCUMENT,  # the far machine answered but refused the media (size, resolution)
    # Compatibility API errors a fax can end with, or a submission be refused with
    11200: Failure.PROVIDER,  # MediaUrl could not be fetched: our web app may be back later
    12100: Failure.DOCUMENT,
    12300: Failure.DOCUMENT,
    13223: Failure.BAD_NUMBER,
    13224: Failure.BAD_NUMBER,
    13227: Failure.BLOCKED,
    20003: Failure.ACCOUNT,
    20005: Failure.ACCOUNT,
    20429: Failure.RATE_LIMITED,
    21210: Failure.ACCOUNT,  # the From number is not ours
    21212: Failure.ACCOUNT,  # the From number is not valid
    21211: Failure.BAD_NUMBER,
    21214: Failure.BAD_NUMBER,
    21217: Failure.BAD_NUMBER,
    21215: Failure.BLOCKED,
    21216: Failure.BLOCKED,
    # T.30 results of the FreeSWITCH/spandsp engine SignalWire runs on, should they surface
    2: Failure.NOT_A_FAX,  # no fax tones answered (a voice line)
    8: Failure.NOT_A_FAX,  # the far end is not a compatible fax
    9: Failure.NOT_A_FAX,  # the far end cannot receive faxes
    11: Failure.DOCUMENT,  # cannot receive at the image's resolution
    12: Failure.DOCUMENT,  # cannot receive at the image's size
}


def failure_of(status: str, code: int | None) -> Failure:
    """What a final status (and its ErrorCode) means in our vocabulary."""
    if status in ENDED:
        return ENDED[status]
    if status == "failed" and code is not None:
        return CODES.get(code, Failure.PROVIDER)
    return Failure.PROVIDER  # failed without a code we know, or a status we have no word for


def _number(value: object) -> int | None:
    try:
        return int(str(value)) if value not in (None, "") else None
    except ValueError:
        return None


def _seconds(value: object) -> float | None:
    try:
        return float(str(value)) if value not in (None, "") else None
    except ValueError:
        return None


def _when(value: object, default: dt.datetime) -> dt.datetime:
    """ISO 8601 (the fax samples) or RFC 2822 (older 2010-style resources); else ``default``."""
    if not isinstance(value, str) or not value:
        return default
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return default
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ProviderError(Failure.PROVIDER, f"twilio answered {response.status_code} without a JSON object")
    return body


def carries(url: object, reference: str) -> bool:
    """The media URL we gave names this reference (``?ref=``)."""
    return isinstance(url, str) and parse_qs(urlsplit(url).query).get("ref") == [reference]


class TwilioProvider(HttpProvider):
    name = "twilio"

    def __init__(
        self,
        base_url: str,
        account_sid: str,
        auth_token: str,
        signing_key: str,
        sender: str,
        public_url: str,
        media: MediaHost | None,
    ) -> None:
        super().__init__(base_url, auth=httpx.BasicAuth(account_sid, auth_token))
        self.account_sid = account_sid
        self.sender = sender
        self.callback = public_url.rstrip("/") + WEBHOOK_PATH
        self.media = media
        self.faxes = f"{self.base_url}/Accounts/{quote(account_sid, safe='')}/Faxes"
        self._validator = RequestValidator(signing_key)

    @classmethod
    def from_settings(cls, settings: Settings, secret: bytes, media: MediaHost | None) -> TwilioProvider:
        names = ("twilio_base_url", "twilio_account_sid", "twilio_auth_token", "twilio_from", "public_url")
        require(settings, *names)
        token = settings.twilio_auth_token
        assert token and settings.twilio_base_url and settings.twilio_account_sid
        assert settings.twilio_from and settings.public_url
        # SignalWire signs callbacks with the project's Signing Key; Twilio with the auth token.
        key = settings.twilio_signing_key
        signing = key.get_secret_value() if key and key.get_secret_value() else token.get_secret_value()
        return cls(
            settings.twilio_base_url,
            settings.twilio_account_sid,
            token.get_secret_value(),
            signing,
            settings.twilio_from,
            settings.public_url,
            media,
        )

    # requests ---------------------------------------------------------------------------------
    async def submit(self, pdf: bytes, to: str, reference: str) -> str:
        if self.media is None:
            raise ProviderError(Failure.PROVIDER, "twilio fetches faxes by URL: no media host was given")
        url = await self.media.publish(reference, pdf)
        form = {
            "To": to,
            "From": self.sender,
            "MediaUrl": f"{url}?{urlencode({'ref': reference})}",
            "StatusCallback": self.callback,
        }
        sid = _json(await self.call("POST", f"{self.faxes}.json", data=form)).get("sid")
        if not isinstance(sid, str) or not sid:
            # Accepted but unnamed: the next attempt's find() recognises it by its media URL.
            raise ProviderError(Failure.PROVIDER, "twilio accepted the fax without naming it (no sid)")
        return sid

    async def find(self, reference: str, since: dt.datetime, to: str | None = None) -> str | None:
        created = since.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        query = {"From": self.sender, "DateCreatedAfter": created, "PageSize": str(PAGE_SIZE)}
        if to:
            query["To"] = to
        url = f"{self.faxes}.json?{urlencode(query)}"
        found: list[tuple[str, str]] = []  # (date_created, sid)
        for _ in range(MAX_LIST_PAGES):
            page = _json(await self.call("GET", url))
            found += [(str(f.get("date_created")), str(f["sid"])) for f in self._ours(page, reference)]
            following = self._next_page(page)
            if following is None:
                break
            url = following
        else:
            log.warning("twilio: stopped looking for %s after %d pages of faxes", reference, MAX_LIST_PAGES)
        return max(found)[1] if found else None

    def _ours(self, page: Mapping[str, Any], reference: str) -> list[Mapping[str, Any]]:
        """Our outbound faxes with this reference that are under way or delivered; one that
        ended busy or failed was an earlier attempt, not the one to wait for."""
        faxes = page.get("faxes")
        return [
            fax
            for fax in (faxes if isinstance(faxes, list) else [])
            if isinstance(fax, dict)
            and fax.get("sid")
            and fax.get("direction", "outbound") == "outbound"
            and str(fax.get("status", "")).lower() not in DID_NOT_GO
            and (
                carries(fax.get("media_url"), reference) or carries(fax.get("original_media_url"), reference)
            )
        ]

    def _next_page(self, page: Mapping[str, Any]) -> str | None:
        """The next page as the provider names it (2010-style ``next_page_uri``, or Fax v1's
        ``meta.next_page_url``), on the provider's own host only: it gets our credentials."""
        meta = page.get("meta")
        following = page.get("next_page_uri") or (
            meta.get("next_page_url") if isinstance(meta, dict) else None
        )
        if not isinstance(following, str) or not following:
            return None
        url = urljoin(self.base_url + "/", following)
        if urlsplit(url)[:2] != urlsplit(self.base_url)[:2]:
            raise ProviderError(Failure.PROVIDER, "twilio named a next page on another host")
        return url

    async def status(self, job_id: str) -> ProviderEvent | None:
        now = dt.datetime.now(dt.UTC)
        try:
            fax = _json(await self.call("GET", f"{self.faxes}/{quote(job_id, safe='')}.json"))
        except ProviderError as exc:
            if exc.code == 404:
                return ProviderEvent(
                    self.name, job_id, False, now, "unknown to twilio (404)", Failure.PROVIDER
                )
            # Asked again at the next poll; a webhook may answer first.
            log.warning("twilio: could not ask about fax %s: %s", job_id, exc)
            return None
        return self.outcome(
            job_id,
            str(fax.get("status", "")),
            _number(fax.get("error_code")),
            str(fax.get("error_message") or ""),
            _number(fax.get("num_pages")),
            _seconds(fax.get("duration")),
            _when(fax.get("date_updated"), now),
        )

    async def cancel(self, job_id: str) -> bool:
        url = f"{self.faxes}/{quote(job_id, safe='')}.json"
        try:
            fax = _json(await self.call("POST", url, data={"Status": "canceled"}))
        except ProviderError as exc:
            if exc.code is not None and 400 <= exc.code < 500 and exc.code not in (401, 403, 429):
                return False  # only a queued fax can be withdrawn: this one is on its way
            raise
        return str(fax.get("status", "")).lower() in ("canceled", "cancelled")

    def refusal(self, response: httpx.Response) -> ProviderError:
        try:
            body = response.json()
        except ValueError:
            body = None
        code = _number(body.get("code")) if isinstance(body, dict) else None
        message = str(body.get("message") or "")[:200] if isinstance(body, dict) else ""
        failure = CODES.get(code, Failure.PROVIDER) if code is not None else Failure.PROVIDER
        detail = f"twilio refused the request ({response.status_code}, code {code}: {message})"
        return ProviderError(failure, detail, code=response.status_code)

    # outcomes ---------------------------------------------------------------------------------
    def outcome(
        self,
        job_id: str,
        status: str,
        code: int | None,
        message: str,
        pages: int | None,
        duration: float | None,
        at: dt.datetime,
    ) -> ProviderEvent | None:
        """A final status as an event; None while the fax is on its way."""
        status = status.lower()
        if status in UNDER_WAY:
            return None
        if status == "delivered":
            return ProviderEvent(self.name, job_id, True, at, "delivered", pages=pages, duration=duration)
        why = f"{status} (error {code}: {message[:200]})" if code is not None else status
        failure = failure_of(status, code)
        return ProviderEvent(self.name, job_id, False, at, why, failure, pages=pages, duration=duration)

    def verify(self, webhook: Webhook, now: dt.datetime) -> Verified:
        signature = self._signature(webhook)
        if not webhook.content_type.startswith("application/x-www-form-urlencoded"):
            raise WebhookRefused("a fax status callback is a form post", status=400)
        form = webhook.form
        sid, status = form.get("FaxSid", ""), form.get("FaxStatus", "")
        if not sid or not status:
            raise WebhookRefused("no FaxSid or FaxStatus", status=400)
        if form.get("AccountSid", self.account_sid) != self.account_sid:
            raise WebhookRefused("a fax of another account")
        event = self.outcome(
            sid,
            status,
            _number(form.get("ErrorCode")),
            form.get("ErrorMessage", ""),
            _number(form.get("NumPages")),
            _seconds(form.get("Duration")),
            now,
        )
        # Callbacks carry no timestamp: the signature itself identifies the message.
        return Verified(event, signature)

    def _signature(self, webhook: Webhook) -> str:
        """The header signature that matches what the provider signed, or a refusal."""
        given = [s for h in SIGNATURE_HEADERS if (s := webhook.headers.get(h))]
        if not given:
            raise WebhookRefused("unsigned (no X-Twilio-Signature or X-SignalWire-Signature)")
        for signature in given:
            if self._validator.validate(webhook.url, dict(webhook.form), signature):
                return signature
        raise WebhookRefused("the signature does not match this URL and form")
