"""Sinch Fax API v3 (the successor of Phaxio): a fax uploaded as a PDF, its outcome by callback.

Sinch does not sign its callbacks. Each fax carries its own callback URL with Basic credentials
in it (``https://sinch:<password>@host/webhooks/fax/sinch``), the password derived from the
instance secret, and a callback is believed only if it brings them back. The credentials are
never logged: only the path is.

Our reference rides on the fax as the label ``reference`` (``labels[reference]`` in the
upload), so after a crash ``find`` can list the recent outbound faxes and recognise ours.
Sinch has no way to withdraw a fax once accepted: ``cancel`` says so and leaves it to finish.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import logging
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from dispatcher.models import ProviderEvent
from dispatcher.providers import ProviderError, Verified, Webhook, WebhookRefused, require
from dispatcher.providers.http import HttpProvider, parse_time, require_tls
from dispatcher.providers.media import MediaHost
from dispatcher.settings import Settings
from dispatcher.store.failures import Failure

log = logging.getLogger("dispatcher.fax")

LABEL = "reference"  # the label key our reference travels under
CALLBACK_USER = "sinch"
CALLBACK_PATH = "/webhooks/fax/sinch"
PAGE_SIZE = 1000  # the most Sinch returns per page
MAX_PAGES = 20  # 20,000 faxes in the find window: beyond that, give up looking
FINAL = ("COMPLETED", "FAILURE")

F = Failure
# CALL_ERROR (and LINE_ERROR, Phaxio's name for it): the call was not placed, or dropped. Codes
# not listed (11 dropped, 19 hang-up, 43 no connection, 88/110 network, 100 carrier) are the
# network's trouble: a provider error, worth another try.
CALL_CODES: dict[int, Failure] = {
    15: F.BUSY,  # congestion: the same remedy as a busy line, later
    17: F.BUSY,
    16: F.NO_ANSWER,
    30: F.NO_ANSWER,
    87: F.NO_ANSWER,
    112: F.NO_ANSWER,
    32: F.NOT_A_FAX,
    34: F.BAD_NUMBER,
    49: F.BAD_NUMBER,
    52: F.BAD_NUMBER,
    73: F.BAD_NUMBER,
    115: F.BAD_NUMBER,
    50: F.BLOCKED,  # the destination rejects the call
}
# FAX_ERROR: the call connected, the T.30 exchange failed. Most codes are a bad line (a provider
# error, retried); these say something about the destination, the document or the account.
FAX_CODES: dict[int, Failure] = {
    31: F.NOT_A_FAX,  # a fax machine we cannot talk to will not learn
    68: F.NOT_A_FAX,
    132: F.NOT_A_FAX,  # no fax tone: a person or a voice line answered
    48: F.NO_ANSWER,  # the receiver may be out of paper
    46: F.ACCOUNT,  # insufficient funds
    113: F.DOCUMENT,
    133: F.BLOCKED,  # "phone number is not permitted"
}
GENERAL_CODES: dict[int, Failure] = {5: F.ACCOUNT, 86: F.ACCOUNT, 105: F.ACCOUNT, 125: F.ACCOUNT}
BY_TYPE: dict[str, dict[int, Failure]] = {
    "CALL_ERROR": CALL_CODES,
    "LINE_ERROR": CALL_CODES,
    "FAX_ERROR": FAX_CODES,
    "GENERAL_ERROR": GENERAL_CODES,
    "FATAL_ERROR": {},
}


def failure_of(error_type: object, code: int | None) -> Failure:
    """Sinch's (errorType, errorCode) in our vocabulary; the same code means different things
    under different types, so the pair decides."""
    if error_type == "DOCUMENT_CONVERSION_ERROR":
        return F.DOCUMENT
    table = BY_TYPE.get(str(error_type), {})
    return table.get(code, F.PROVIDER) if code is not None else F.PROVIDER


def callback_password(secret: bytes) -> str:
    """Stable per instance (every process derives the same), unguessable without the secret."""
    return hmac.new(secret, b"sinch-callback", hashlib.sha256).hexdigest()[:32]


def callback_url(public_url: str, password: str) -> str:
    parts = urlsplit(public_url.rstrip("/"))
    host = parts.netloc.rpartition("@")[2]  # any userinfo of its own gives way to ours
    netloc = f"{CALLBACK_USER}:{password}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path + CALLBACK_PATH, "", ""))


class SinchProvider(HttpProvider):
    name = "sinch"

    def __init__(
        self, base_url: str, project_id: str, key_id: str, key_secret: str, public_url: str, secret: bytes
    ) -> None:
        super().__init__(
            base_url, auth=httpx.BasicAuth(key_id, key_secret), headers={"Accept": "application/json"}
        )
        self.faxes = f"/projects/{quote(project_id, safe='')}/faxes"
        password = callback_password(secret)
        self._callback = callback_url(require_tls(public_url, "DISPATCHER_PUBLIC_URL"), password)
        self._credentials = f"{CALLBACK_USER}:{password}".encode()
        self._warned_labels = False

    @classmethod
    def from_settings(
        cls, settings: Settings, secret: bytes, media: MediaHost | None = None
    ) -> SinchProvider:
        require(settings, "sinch_project_id", "sinch_key_id", "sinch_key_secret", "public_url")
        assert settings.sinch_project_id and settings.sinch_key_id and settings.public_url
        assert settings.sinch_key_secret is not None
        return cls(
            settings.sinch_base_url,
            settings.sinch_project_id,
            settings.sinch_key_id,
            settings.sinch_key_secret.get_secret_value(),
            settings.public_url,
            secret,
        )

    # sending ---------------------------------------------------------------------------------
    async def submit(self, pdf: bytes, to: str, reference: str) -> str:
        data = {
            "to": to,
            "callbackUrl": self._callback,
            # One JSON document per callback: what we digest to refuse a replay.
            "callbackUrlContentType": "application/json",
            f"labels[{LABEL}]": reference,
        }
        files = {"file": ("letter.pdf", pdf, "application/pdf")}
        response = await self.call("POST", self.faxes, data=data, files=files)
        fax = _fax_of(_json_object(response))
        job = fax.get("id")
        if not isinstance(job, str) or not job:
            # It may well have been accepted: the next attempt asks ``find`` before resending.
            raise ProviderError(F.PROVIDER, "sinch answered without a fax id")
        if _labels(fax).get(LABEL) != reference and not self._warned_labels:
            self._warned_labels = True
            log.warning("sinch did not echo our label on fax %s: after a crash it may not be found", job)
        return job

    async def find(self, reference: str, since: dt.datetime, to: str | None = None) -> str | None:
        """A fax of ours that is waiting, dialling or delivered. One that failed is not the
        answer: its failure was (or will be) applied, and the retry must dial again. (Sinch's
        list documents no filter by number: ``to`` is not used.)"""
        params: dict[str, str | int] = {
            "direction": "OUTBOUND",
            "createTime>": _iso(since),  # on the wire: createTime%3E=… (Sinch's createTime>=…)
            "pageSize": PAGE_SIZE,
        }
        for page in range(1, MAX_PAGES + 1):
            body = _json_object(await self.call("GET", self.faxes, params={**params, "page": page}))
            faxes = [f for f in body.get("faxes") or [] if isinstance(f, dict)]
            for fax in faxes:
                job = fax.get("id")
                if _labels(fax).get(LABEL) == reference and fax.get("status") != "FAILURE" and job:
                    return str(job)
            if _last_page(body, page, len(faxes)):
                return None
        log.warning(
            "sinch: more than %d outbound faxes since %s; stopped looking", PAGE_SIZE * MAX_PAGES, since
        )
        return None

    async def status(self, job_id: str) -> ProviderEvent | None:
        try:
            response = await self.call("GET", f"{self.faxes}/{quote(job_id, safe='')}")
            fax = _json_object(response)
        except ProviderError as exc:
            # A poll that fails is asked again next time; raising would stop the send loop.
            log.warning("sinch: no status for fax %s: %s", job_id, exc)
            return None
        fax.setdefault("id", job_id)
        return self._event(fax, dt.datetime.now(dt.UTC))

    async def cancel(self, job_id: str) -> bool:
        log.info("sinch has no way to withdraw fax %s once accepted: it is left to finish", job_id)
        return False

    def refusal(self, response: httpx.Response) -> ProviderError:
        code = response.status_code
        detail = _violations(response)
        if code == 402:
            return ProviderError(F.ACCOUNT, "sinch: the account has no balance left", code=code)
        if code == 404:  # the project, not the fax: every request would meet the same
            return ProviderError(F.ACCOUNT, "sinch does not know this project (404)", code=code)
        if code == 413:
            return ProviderError(F.DOCUMENT, "sinch: the document is too large", code=code)
        if code == 422 and "to" in detail:
            return ProviderError(F.BAD_NUMBER, f"sinch refused the number: {detail['to']}", code=code)
        if code == 422 and detail.keys() & {"file", "files", "contentUrl"}:
            return ProviderError(F.DOCUMENT, f"sinch refused the document ({code})", code=code)
        return ProviderError(F.PROVIDER, f"sinch refused the request ({code})", code=code)

    # callbacks -------------------------------------------------------------------------------
    def verify(self, webhook: Webhook, now: dt.datetime) -> Verified:
        self._check_credentials(webhook.headers.get("authorization", ""))
        payload = _payload(webhook)
        # Sinch retries a callback with the same body: the same message, refused the second time.
        message = "sha256:" + hashlib.sha256(webhook.body).hexdigest()
        fax = payload.get("fax")
        if payload.get("event") != "FAX_COMPLETED":
            return Verified(None, message)  # INCOMING_FAX or a newer event: not about our faxes
        if not isinstance(fax, dict) or not isinstance(fax.get("id"), str) or not fax["id"]:
            raise WebhookRefused("a FAX_COMPLETED callback without a fax id", status=400)
        if fax.get("direction", "OUTBOUND") != "OUTBOUND":
            return Verified(None, message)
        at = parse_time(fax.get("completedTime")) or parse_time(payload.get("eventTime")) or now
        return Verified(self._event(fax, at), message)

    def _check_credentials(self, header: str) -> None:
        scheme, _, value = header.strip().partition(" ")
        try:
            given = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            given = b""
        if scheme.lower() != "basic" or not hmac.compare_digest(given, self._credentials):
            raise WebhookRefused("wrong or missing Basic credentials", status=401)

    def _event(self, fax: dict[str, Any], now: dt.datetime) -> ProviderEvent | None:
        """A fax object's final outcome (from a callback or a GET), or None while it is live."""
        status = fax.get("status")
        if status not in FINAL:
            return None
        job = str(fax.get("id"))
        at = parse_time(fax.get("completedTime")) or now
        sent = _int(fax.get("pagesSentSuccessfully"))
        if status == "COMPLETED":
            pages = sent or _int(fax.get("numberOfPages"))
            # Sinch gives no time on the line (completedTime includes its queue and retries).
            return ProviderEvent(self.name, job, True, at, f"delivered by sinch ({pages} pages)", pages=pages)
        code = _int(fax.get("errorCode"))
        if code is None:
            code = _int(fax.get("errorId"))  # older API builds: errorId, errorCode a string
        failure = failure_of(fax.get("errorType"), code)
        reason = f"{fax.get('errorType')} {code}: {str(fax.get('errorMessage') or '')[:160]}"
        if sent:
            reason += f"; {sent} of {_int(fax.get('numberOfPages'))} pages got through"
        return ProviderEvent(self.name, job, False, at, reason, failure, pages=sent)


# parsing -------------------------------------------------------------------------------------
def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise ProviderError(F.PROVIDER, f"sinch answered {response.status_code} without JSON") from None
    if not isinstance(body, dict):
        raise ProviderError(F.PROVIDER, "sinch answered with something other than an object")
    return body


def _fax_of(body: dict[str, Any]) -> dict[str, Any]:
    """One recipient brings one Fax back; the list shape is tolerated all the same."""
    faxes = body.get("faxes")
    if isinstance(faxes, list) and faxes and isinstance(faxes[0], dict):
        first: dict[str, Any] = faxes[0]
        return first
    return body


def _labels(fax: dict[str, Any]) -> dict[str, Any]:
    labels = fax.get("labels")
    return labels if isinstance(labels, dict) else {}


def _last_page(body: dict[str, Any], page: int, count: int) -> bool:
    total = _int(body.get("totalPages"))
    current = _int(body.get("pageNumber")) or _int(body.get("page")) or page
    if total is not None:
        return count == 0 or current >= total
    return count < PAGE_SIZE


def _violations(response: httpx.Response) -> dict[str, str]:
    """``details.fieldViolations`` of a 4xx, by field (descriptions cut short)."""
    try:
        body = response.json()
        found = body["details"]["fieldViolations"]
        return {str(v["field"]): str(v.get("description", ""))[:120] for v in found if isinstance(v, dict)}
    except (ValueError, KeyError, TypeError):
        return {}


def _payload(webhook: Webhook) -> dict[str, Any]:
    """The callback as one object, whether Sinch sent JSON (as asked) or its default form
    (where ``fax`` is a JSON string)."""
    try:
        if webhook.content_type.startswith("multipart/form-data"):
            form = webhook.form
            fax = json.loads(form["fax"]) if "fax" in form else None
            payload: object = {"event": form.get("event"), "eventTime": form.get("eventTime"), "fax": fax}
        else:
            payload = json.loads(webhook.body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookRefused("a callback that is not JSON", status=400) from None
    if not isinstance(payload, dict):
        raise WebhookRefused("a callback that is not an object", status=400)
    return payload


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
