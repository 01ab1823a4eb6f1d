"""Telnyx Programmable Fax (API v2): faxes sent by URL, outcomes from Ed25519-signed webhooks.

Telnyx fetches the PDF from ``media_url`` (our web app, under a signed expiring URL) and tags
the fax with ``client_state``, which it echoes on the fax and in every webhook: our reference
goes there, base64-encoded as Telnyx requires, so ``find`` can recognise our fax after a crash.
Telnyx documents no idempotency key for faxes, so that lookup is all that stops a second one.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
from collections.abc import Mapping
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from dispatcher.models import ProviderEvent
from dispatcher.providers import ProviderError, Verified, Webhook, WebhookRefused, require
from dispatcher.providers.http import HttpProvider, parse_time
from dispatcher.providers.media import MediaHost
from dispatcher.settings import Settings
from dispatcher.store.failures import Failure

log = logging.getLogger("dispatcher.fax")

WEBHOOK_PATH = "/webhooks/fax/telnyx"
# Telnyx's own SDKs refuse a signature older than 5 minutes. One from the future can only be
# clock skew, and NTP keeps that to well under this.
MAX_AGE = 300
MAX_AHEAD = 60
PAGE_SIZE = 50  # Telnyx documents neither a default nor a maximum page size
MAX_PAGES = 100  # a bound on one lookup: 5,000 faxes within the window

# Statuses of a fax that will never reach the number: after a crash, submitting again is right.
NOT_SENT = frozenset({"failed", "canceled", "cancelled"})
# News on the way: the outcome comes later.
NEWS = frozenset({"fax.queued", "fax.media.processed", "fax.sending.started"})

_REASONS: dict[Failure, tuple[str, ...]] = {
    Failure.BUSY: ("user_busy",),
    Failure.NO_ANSWER: (
        "receiver_no_answer",
        "receiver_no_response",
        "receiver_recovery_on_timer_expire",  # the far end's SIP 408: nobody picked up in time
        "no_answer",
        "timeout",
    ),
    Failure.NOT_A_FAX: ("fax_initial_communication_timeout", "receiver_incompatible_destination"),
    Failure.BAD_NUMBER: (
        "receiver_unallocated_number",
        "receiver_invalid_number_format",
        "destination_invalid",
    ),
    # Refused by the far end, or not allowed by our outbound profile for this destination only:
    # other numbers still go, so this is the letter's problem, not the account's.
    Failure.BLOCKED: (
        "receiver_decline",
        "rejected",
        "destination_not_in_countries_whitelist",
        "destination_not_in_service_plan",
        "unverified_destination_not_allowed",
    ),
    Failure.DOCUMENT: (
        "file_size_limit_exceeded",
        "page_count_limit_exceeded",
        "file_format_invalid",
        "media_processing_exception",
    ),
    # file_download_failed means Telnyx could not fetch our media URL: the deployment's public
    # URL is wrong or down, which an operator fixes; the letter itself is fine.
    Failure.ACCOUNT: (
        "account_disabled",
        "no_outbound_profile",
        "outbound_profile_daily_spend_limit_exceeded",
        "unverified_origination_number",
        "file_download_failed",
    ),
    Failure.RATE_LIMITED: (
        "user_channel_limit_exceeded",
        "outbound_profile_channel_limit_exceeded",
        "connection_channel_limit_exceeded",
    ),
    # Telnyx does not say what becomes of a cancelled fax; if it reports one as failed, it is
    # one we (or an operator) withdrew, not an attempt at the number.
    Failure.CANCELLED: ("canceled", "cancelled", "user_canceled", "user_cancelled"),
}
FAILURES: dict[str, Failure] = {reason: f for f, reasons in _REASONS.items() for reason in reasons}


def failure_for(reason: str | None) -> Failure:
    """Telnyx's ``failure_reason`` in our vocabulary; anything else (call dropped, T.30 errors,
    service_unavailable, a reason added later) is the provider's, and worth another try."""
    return FAILURES.get((reason or "").strip().lower(), Failure.PROVIDER)


def encode_reference(reference: str) -> str:
    return base64.b64encode(reference.encode()).decode("ascii")


def decode_reference(client_state: object) -> str | None:
    if not isinstance(client_state, str):
        return None
    try:
        return base64.b64decode(client_state, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def public_key(value: str) -> Ed25519PublicKey:
    """The account's public key from the Mission Control portal: base64 of 32 raw bytes."""
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != 32:
        raise ValueError("DISPATCHER_TELNYX_PUBLIC_KEY must be the base64 Ed25519 public key (32 bytes)")
    return Ed25519PublicKey.from_public_bytes(raw)


class TelnyxProvider(HttpProvider):
    name = "telnyx"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        connection_id: str,
        sender: str,
        key: Ed25519PublicKey,
        public_url: str,
        media: MediaHost | None,
    ) -> None:
        super().__init__(base_url, headers={"Authorization": f"Bearer {api_key}"})
        self.connection_id = connection_id
        self.sender = sender
        self.key = key
        self.webhook_url = public_url.rstrip("/") + WEBHOOK_PATH
        self.media = media  # None in the web app, which only verifies webhooks
        self.page_size = PAGE_SIZE

    @classmethod
    def from_settings(cls, settings: Settings, secret: bytes, media: MediaHost | None) -> TelnyxProvider:
        names = ("telnyx_api_key", "telnyx_connection_id", "telnyx_from", "telnyx_public_key", "public_url")
        require(settings, *names)
        assert settings.telnyx_api_key and settings.telnyx_connection_id and settings.telnyx_from
        assert settings.telnyx_public_key and settings.public_url
        return cls(
            settings.telnyx_base_url,
            settings.telnyx_api_key.get_secret_value(),
            settings.telnyx_connection_id,
            settings.telnyx_from,
            public_key(settings.telnyx_public_key),
            settings.public_url,
            media,
        )

    # sending --------------------------------------------------------------------------------
    async def submit(self, pdf: bytes, to: str, reference: str) -> str:
        if self.media is None:
            raise ProviderError(
                Failure.ACCOUNT, "telnyx fetches faxes by URL: DISPATCHER_PUBLIC_URL is unset"
            )
        body = {
            "connection_id": self.connection_id,
            "to": to,
            "from": self.sender,
            "media_url": await self.media.publish(reference, pdf),
            "webhook_url": self.webhook_url,
            "client_state": encode_reference(reference),
        }
        response = await self.call("POST", "/faxes", json=body)
        fax = _data(response)
        if not isinstance(fax, dict) or not isinstance(fax.get("id"), str):
            # Accepted or not, we cannot tell: the next attempt looks for it before sending again.
            raise ProviderError(
                Failure.PROVIDER, "telnyx answered without a fax id", code=response.status_code
            )
        return str(fax["id"])

    def refusal(self, response: httpx.Response) -> ProviderError:
        """422 says which field was wrong (``source.pointer``) and why (``code``)."""
        code = response.status_code
        errors = _errors(response)
        codes = {str(e.get("code")) for e in errors}
        fields = {str((e.get("source") or {}).get("pointer", "")).strip("/") for e in errors}
        titles = "; ".join(str(e.get("title") or e.get("code")) for e in errors)[:200]
        detail = f"telnyx refused it ({code}{': ' + titles if titles else ''})"
        if "10016" in codes or "to" in fields:
            return ProviderError(Failure.BAD_NUMBER, detail, code=code)
        if fields & {"media_url", "media_name", "contents"}:
            return ProviderError(Failure.DOCUMENT, detail, code=code)
        if code == 402 or fields & {"from", "connection_id"}:
            # Our number or application, as configured: nothing goes until an operator fixes it.
            return ProviderError(Failure.ACCOUNT, detail, code=code)
        return ProviderError(Failure.PROVIDER, detail, code=code)

    # after the fact -------------------------------------------------------------------------
    async def find(self, reference: str, since: dt.datetime, to: str | None = None) -> str | None:
        """Telnyx cannot filter by client_state: list the outbound faxes since then (to that
        number, when we are told it) and compare each one's client_state ourselves."""
        params = {
            "filter[created_at][gte]": since.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "filter[direction][eq]": "outbound",
            "page[size]": str(self.page_size),
        }
        if to:
            params["filter[to][eq]"] = to
        for page in range(1, MAX_PAGES + 1):
            response = await self.call("GET", "/faxes", params={**params, "page[number]": str(page)})
            faxes = _data(response)
            if not isinstance(faxes, list):
                raise ProviderError(Failure.PROVIDER, "telnyx listed faxes in an unknown shape")
            if job := _ours(faxes, reference):
                return job
            if _last_page(response, page, len(faxes), self.page_size):
                return None
        # Not found among those we read is not "not sent": refuse to guess, try again later.
        raise ProviderError(Failure.PROVIDER, f"telnyx lists more than {MAX_PAGES} pages of faxes")

    async def status(self, job_id: str) -> ProviderEvent | None:
        try:
            response = await self.call("GET", f"/faxes/{job_id}")
        except ProviderError as exc:
            # Asked again at the next poll; a webhook may well answer first.
            log.warning("telnyx: cannot ask about fax %s: %s", job_id, exc)
            return None
        fax = _data(response)
        if not isinstance(fax, dict):
            return None
        at = parse_time(fax.get("updated_at")) or dt.datetime.now(dt.UTC)
        return self._outcome(job_id, str(fax.get("status", "")), fax, at)

    async def cancel(self, job_id: str) -> bool:
        try:
            await self.call("POST", f"/faxes/{job_id}/actions/cancel")
        except ProviderError as exc:
            if exc.code is not None and 400 <= exc.code < 500 and exc.code not in (401, 403, 429):
                return False  # 422: already delivered, failed, or otherwise past cancelling
            raise
        return True

    def _outcome(
        self, job_id: str, status: str, fields: Mapping[str, Any], at: dt.datetime
    ) -> ProviderEvent | None:
        if status == "delivered":
            pages, secs = _number(fields.get("page_count")), _number(fields.get("call_duration_secs"))
            return ProviderEvent(
                self.name,
                job_id,
                True,
                at,
                "delivered",
                pages=None if pages is None else int(pages),
                duration=secs,
            )
        if status in NOT_SENT:
            reason = fields.get("failure_reason")
            reason = reason if isinstance(reason, str) and reason else status
            failure = failure_for(reason) if status == "failed" else Failure.CANCELLED
            return ProviderEvent(self.name, job_id, False, at, reason[:200], failure.value)
        return None

    # webhooks -------------------------------------------------------------------------------
    def verify(self, webhook: Webhook, now: dt.datetime) -> Verified:
        self._check_signature(webhook, now)
        data = _event(webhook.body)
        event_type, payload = data["event_type"], data["payload"]
        message = str(data["id"])
        if event_type in NEWS or payload.get("direction") == "inbound":
            return Verified(None, message)
        if event_type not in ("fax.delivered", "fax.failed"):
            log.info("telnyx: ignoring webhook event %s", event_type)
            return Verified(None, message)
        job = payload.get("fax_id")
        if not isinstance(job, str) or not job:
            raise WebhookRefused("telnyx event without a fax_id", status=400)
        at = parse_time(data.get("occurred_at")) or now
        status = "delivered" if event_type == "fax.delivered" else "failed"
        return Verified(self._outcome(job, status, payload, at), message)

    def _check_signature(self, webhook: Webhook, now: dt.datetime) -> None:
        signature = webhook.headers.get("telnyx-signature-ed25519", "")
        stamp = webhook.headers.get("telnyx-timestamp", "").strip()
        if not signature or not stamp:
            raise WebhookRefused("unsigned: no telnyx-signature-ed25519 or telnyx-timestamp header")
        if not stamp.isdigit() or len(stamp) > 12:
            raise WebhookRefused("malformed telnyx-timestamp")
        age = now.timestamp() - int(stamp)
        if age > MAX_AGE or age < -MAX_AHEAD:
            raise WebhookRefused(f"telnyx-timestamp is {age:.0f} s old: stale, replayed or from the future")
        try:
            raw = base64.b64decode(signature, validate=True)
            self.key.verify(raw, stamp.encode() + b"|" + webhook.body)
        except (binascii.Error, ValueError, InvalidSignature):
            raise WebhookRefused("bad telnyx-signature-ed25519") from None


def _event(body: bytes) -> dict[str, Any]:
    """The signed event; some of Telnyx's examples leave out the ``data`` wrapper."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookRefused("telnyx webhook body is not JSON", status=400) from None
    data = document.get("data", document) if isinstance(document, dict) else None
    if not isinstance(data, dict):
        raise WebhookRefused("telnyx webhook without an event", status=400)
    event_id, event_type, payload = data.get("id"), data.get("event_type"), data.get("payload")
    if not (isinstance(event_id, str) and event_id and isinstance(event_type, str)):
        raise WebhookRefused("telnyx event without an id or event_type", status=400)
    if not isinstance(payload, dict):
        raise WebhookRefused("telnyx event without a payload", status=400)
    return data


def _data(response: httpx.Response) -> Any:
    try:
        document = response.json()
    except ValueError:
        return None
    return document.get("data") if isinstance(document, dict) else None


def _errors(response: httpx.Response) -> list[dict[str, Any]]:
    try:
        document = response.json()
    except ValueError:
        return []
    errors = document.get("errors") if isinstance(document, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _ours(faxes: list[Any], reference: str) -> str | None:
    """Our fax among these, unless it will never be sent (then submitting again is right)."""
    for fax in faxes:
        if not isinstance(fax, dict) or decode_reference(fax.get("client_state")) != reference:
            continue
        if str(fax.get("status", "")) not in NOT_SENT and isinstance(fax.get("id"), str):
            return str(fax["id"])
    return None


def _last_page(response: httpx.Response, page: int, count: int, size: int) -> bool:
    meta = response.json().get("meta")
    total = meta.get("total_pages") if isinstance(meta, dict) else None
    if isinstance(total, int):
        return page >= total
    return count < size  # no meta: a short page is the last one


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None
