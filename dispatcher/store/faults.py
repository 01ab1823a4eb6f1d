"""Which store errors a running dispatcher waits out, and which end it: decided here only.

Curable: the server restarting or unreachable, a connection dropped, a lock or statement timeout,
the disk full, the file system read-only, the database locked. Retrying cures these once the
store answers. Not curable: a bad URL, a missing driver, a missing table (no schema), failed
authentication, a programming error: waiting changes nothing, so the worker stops and says why.
"""

from __future__ import annotations

from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError, NoSuchModuleError
from sqlalchemy.exc import TimeoutError as PoolTimeout

# PostgreSQL SQLSTATE classes and codes that name a passing condition.
CURABLE_CLASSES = ("08", "53", "57", "40", "58")  # connection, resources, operator, rollback, system
CURABLE_CODES = ("55P03", "55006")  # lock not available, object in use
INCURABLE_CODES = ("57014",)  # canceled by the user: a statement_timeout we chose is not an outage
# SQLite reports everything as OperationalError: these messages are a schema or a path, not a fault.
INCURABLE_WORDS = (
    "no such table",
    "no such column",
    "does not exist",
    "password authentication failed",
)


class StoreUnavailable(Exception):
    """The store did not answer and the worker is stopping: the call was given up."""


def _sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlstate", None)
    return code if isinstance(code, str) else None


def curable(exc: BaseException) -> bool:
    """True if waiting and trying again may succeed (see the module's docstring)."""
    if isinstance(exc, ArgumentError | NoSuchModuleError):
        return False
    if isinstance(exc, DisconnectionError | PoolTimeout):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    code = _sqlstate(exc)
    if code is not None:
        if code in INCURABLE_CODES:
            return False
        return code in CURABLE_CODES or code[:2] in CURABLE_CLASSES
    message = str(exc.orig).lower()
    if any(word in message for word in INCURABLE_WORDS):
        return False
    # The rest of OperationalError: locked, disk full, read-only, I/O error, connection refused.
    return type(exc).__name__ in ("OperationalError", "InterfaceError")


def cause(exc: BaseException) -> str:
    """One line naming the error, without SQL or parameters (they may hold personal data)."""
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [""])[0]
    return f"{type(orig).__name__}: {first}" if first else type(orig).__name__
