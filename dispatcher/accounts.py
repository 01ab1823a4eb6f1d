"""People who use the web app: roles, and passwords hashed with argon2.

Roles are ordered: each may do what the one below may, and more.
- viewer: reads everything but supporters' personal data;
- operator: also requeues failed deliveries and retries now;
- staff: also pauses, resumes, closes and extends actions;
- admin: also manages accounts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")  # fullmatch: "$" would let "admin\n" through
MIN_PASSWORD = 12

_hasher = PasswordHasher()  # argon2id with the library's current parameters


class Role(IntEnum):
    VIEWER = 1
    OPERATOR = 2
    STAFF = 3
    ADMIN = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def named(cls, name: str) -> Role:
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"no role {name!r}: viewer, operator, staff or admin") from None


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: Role

    def may(self, needed: Role) -> bool:
        return self.role >= needed


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise ValueError("a user name is 1-64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit")
    return name


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


def password_matches(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


# Checked against when the name is unknown, so a login takes as long for a stranger as for a
# user with a wrong password (no telling which names exist).
DECOY_HASH = _hasher.hash("not a password of anyone here")
