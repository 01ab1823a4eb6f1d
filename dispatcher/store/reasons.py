"""Why a letter is held back, cancelled or waiting, in words the store writes to ``last_error``
and reads back in ``explain``. One enum, so a reader recognises what a writer said.

The values are the texts already stored by earlier versions: rows written before keep meaning
the same. A letter's reply from a server or a fax provider stays free text (it is theirs).
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    WITHDRAWN = "consent withdrawn"
    LAPSED = "consent ended or expired"
    NARROWED = "consent changed: channel withdrawn"
    FORGOTTEN = "supporter forgotten"
    CLOSED_BY_STAFF = "the action was closed by staff"  # what a reopen takes back
    MONTHLY_CAP = "waiting for next month: the supporter's monthly cap is reached"
    # Followed by the language and why: "the letter is now written in de, which ..."
    UNSIGNED_LANGUAGE = "the letter is now written in"

    @classmethod
    def of(cls, text: str | None) -> Reason | None:
        """The reason a stored text says, or None: a server's reply, or nothing."""
        if not text:
            return None
        for reason in cls:
            if text == reason.value:
                return reason
        return cls.UNSIGNED_LANGUAGE if text.startswith(f"{cls.UNSIGNED_LANGUAGE.value} ") else None

    def cancellation(self) -> str:
        """Who or what cancelled a letter for this reason."""
        return _CANCELLED_BY[self]


_CANCELLED_BY = {
    Reason.WITHDRAWN: "cancelled: the supporter withdrew their consent (revoked)",
    Reason.LAPSED: "cancelled: the supporter's consent ended or expired",
    Reason.NARROWED: "cancelled: the supporter's new consent no longer allows this channel",
    Reason.FORGOTTEN: "cancelled: the supporter asked to be forgotten",
    Reason.CLOSED_BY_STAFF: "cancelled: staff closed the action (a reopen brings it back)",
    Reason.MONTHLY_CAP: "cancelled while waiting for the supporter's monthly cap",
    Reason.UNSIGNED_LANGUAGE: "cancelled: the letter's language is one the supporter does not sign",
}
