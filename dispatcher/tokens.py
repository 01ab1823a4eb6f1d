"""Signed, expiring tokens in the links emailed to supporters.

Each purpose has its own salt, so a revoke link cannot be replayed as a confirmation. Tokens are
signed with the instance secret (in the store), so every web process accepts every link.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

from itsdangerous import BadSignature, URLSafeTimedSerializer

CONFIRM: Final = "confirm-opt-in"  # value: the opt-in id
REVOKE: Final = "revoke-consent"  # value: the supporter's email address
MAX_AGE: Final = {
    CONFIRM: dt.timedelta(hours=48),
    # A receipt's link must still work when the supporter finds it months later.
    REVOKE: dt.timedelta(days=400),
}


def sign(secret: bytes, purpose: str, value: str | int) -> str:
    return URLSafeTimedSerializer(secret, salt=purpose).dumps(value)


def read(secret: bytes, purpose: str, token: str) -> str | int | None:
    """The value signed for this purpose, or None: forged, for another purpose, or expired."""
    try:
        value = URLSafeTimedSerializer(secret, salt=purpose).loads(
            token, max_age=int(MAX_AGE[purpose].total_seconds())
        )
    except BadSignature:  # SignatureExpired is one
        return None
    return value if isinstance(value, str | int) and not isinstance(value, bool) else None
