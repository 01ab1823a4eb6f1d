"""Signed, encrypted, expiring tokens in the links emailed to supporters.

A revoke link names the person's email address: encrypted (Fernet: AES-CBC with an HMAC, and
the time it was made), so a proxy's access log or a forwarded email does not show it in the
clear. Each purpose has its own key, so a revoke link cannot be replayed as a confirmation.
Keys come from the instance secret (in the store), so every web process accepts every link.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import time
from typing import Final

from cryptography.fernet import Fernet, InvalidToken

CONFIRM: Final = "confirm-opt-in"  # value: the opt-in id
REVOKE: Final = "revoke-consent"  # value: the supporter's email address
MAX_AGE: Final = {
    CONFIRM: dt.timedelta(hours=48),
    # A receipt's link must still work when the supporter finds it months later.
    REVOKE: dt.timedelta(days=400),
}


def _fernet(secret: bytes, purpose: str) -> Fernet:
    key = hashlib.sha256(b"dispatcher token|" + purpose.encode() + b"|" + secret).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def sign(secret: bytes, purpose: str, value: str | int, at: dt.datetime | None = None) -> str:
    """A token for ``value``; ``at``: when it counts as made (tests make old ones)."""
    made = int(at.timestamp()) if at else int(time.time())
    data = json.dumps(value).encode()
    return _fernet(secret, purpose).encrypt_at_time(data, made).decode("ascii")


def read(secret: bytes, purpose: str, token: str) -> str | int | None:
    """The value signed for this purpose, or None: forged, for another purpose, or expired."""
    try:
        data = _fernet(secret, purpose).decrypt(
            token.encode("ascii"), ttl=int(MAX_AGE[purpose].total_seconds())
        )
        value = json.loads(data)
    except (InvalidToken, UnicodeEncodeError, ValueError):
        return None
    return value if isinstance(value, str | int) and not isinstance(value, bool) else None


def revoke_link(base: str, secret: bytes, email: str, language: str) -> str:
    """The web app's one-click revoke page for this address, shown in ``language``: the link in
    confirmation and receipt emails and their List-Unsubscribe header. ``base``: the public URL
    (empty: a path on this site)."""
    return f"{base.rstrip('/')}/revoke/{sign(secret, REVOKE, email)}?lang={language}"
