"""Fax PDFs served to providers that fetch them (Twilio-shaped APIs take a ``MediaUrl``).

The URL carries a signed, expiring token naming the fax's reference: it cannot be guessed from
another one, and stops working after ``MEDIA_TTL``. The PDF itself sits in the store, so any
web app process in front of the same database can serve it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable

from itsdangerous import BadSignature, URLSafeTimedSerializer

MEDIA_TTL = dt.timedelta(hours=24)  # a provider may retry a busy line for hours with one URL
MEDIA_PATH = "/media/fax/"

Put = Callable[[str, bytes], Awaitable[None]]


def _serializer(secret: bytes) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt="fax-media")


def media_reference(secret: bytes, token: str) -> str | None:
    """The reference a media token names, or None if it is forged or expired."""
    try:
        reference = _serializer(secret).loads(token, max_age=int(MEDIA_TTL.total_seconds()))
    except BadSignature:  # SignatureExpired is a BadSignature
        return None
    return reference if isinstance(reference, str) else None


class MediaHost:
    def __init__(self, public_url: str, secret: bytes, put: Put) -> None:
        self.public_url = public_url.rstrip("/")
        self.secret = secret
        self.put = put

    async def publish(self, reference: str, pdf: bytes) -> str:
        """Store the PDF and return the URL the provider fetches it from."""
        await self.put(reference, pdf)
        token = _serializer(self.secret).dumps(reference)
        return f"{self.public_url}{MEDIA_PATH}{token}.pdf"
