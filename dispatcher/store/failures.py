"""Why a fax did not get through, in one vocabulary for every provider.

Each provider's own codes map onto these; whether a later attempt may succeed is a property of
the failure, not of the provider that reported it.
"""

from __future__ import annotations

from enum import StrEnum


class Failure(StrEnum):
    BUSY = "busy"
    NO_ANSWER = "no answer"
    NOT_A_FAX = "not a fax line"
    BAD_NUMBER = "bad number"
    BLOCKED = "blocked destination"
    DOCUMENT = "document error"
    ACCOUNT = "account error"
    RATE_LIMITED = "rate limited"
    PROVIDER = "provider error"
    # Withdrawn by us (the action was paused or closed) before the provider dialled.
    CANCELLED = "cancelled"

    @property
    def retryable(self) -> bool:
        """A later attempt may get through. An account error is the deployment's, not the
        letter's: the letter waits for an operator to fix the account rather than failing."""
        return self in _RETRYABLE


_RETRYABLE = frozenset(
    {Failure.BUSY, Failure.NO_ANSWER, Failure.RATE_LIMITED, Failure.PROVIDER, Failure.ACCOUNT}
)
