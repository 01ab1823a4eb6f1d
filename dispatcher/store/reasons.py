"""Why a letter is held back, cancelled, waiting or failed, in words the store writes to
``last_error`` and reads back in ``explain``. One enum, so a reader recognises what a writer
said (an action's holds have theirs: ``models.HoldKind``).

The values are the texts already stored by earlier versions: rows written before keep meaning
the same. A letter's reply from a server or a fax provider stays free text (it is theirs): a
reason with words of its own (a language, a reply) is written by its function below and read
back by its opening words.
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
    # Followed by the count and the last reply: "gave up after 3 attempts: 451 try later"
    GAVE_UP = "gave up after"

    @classmethod
    def of(cls, text: str | None) -> Reason | None:
        """The reason a stored text says, or None: a server's reply, or nothing."""
        if not text:
            return None
        for reason in cls:
            if text == reason.value:
                return reason
        for reason in (cls.UNSIGNED_LANGUAGE, cls.GAVE_UP):
            if text.startswith(f"{reason.value} "):
                return reason
        return None

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
    Reason.GAVE_UP: "cancelled after its retries ran out",
}


def unsigned_language(language: str) -> str:
    """A waiting letter cancelled because its pair's letter is now written in ``language``."""
    return f"{Reason.UNSIGNED_LANGUAGE} {language}, which the supporter does not sign"


def gave_up(attempts: int | str, reply: str) -> str:
    """A letter failed for good after ``attempts`` transient failures; ``reply`` is the last.
    (A string: a SQL pattern that finds them, "%".)"""
    return f"{Reason.GAVE_UP} {attempts} attempts: {reply}"


def last_reply(text: str) -> str:
    """The reply a ``gave_up`` text ends with (the text itself, if it is not one)."""
    if Reason.of(text) is not Reason.GAVE_UP:
        return text
    return text.split(": ", 1)[1] if ": " in text else text
