"""The one control API every fake fax provider offers, so that a scenario is written once.

A test plans what becomes of the faxes to a number (``outcome``), how the next submissions to
a number are refused (``refuse_next``), and what happens to their webhooks (``drop_webhooks``,
``repeat_webhooks``); it holds a number's faxes queued (``hold``) and lets them go
(``release``); it puts other deployments' faxes ahead of ours in the provider's list, one a
page (``crowd``), and counts the pages listed (``listed_pages``). Each fake translates these
into its own provider's words; its native scripting stays for the tests of one provider's
quirks.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class Outcome(StrEnum):
    """What becomes of one accepted fax; after the planned ones, faxes are delivered."""

    DELIVERED = "delivered"
    BUSY = "busy"
    NO_ANSWER = "no answer"
    NOT_A_FAX = "not a fax"


class Refusal(StrEnum):
    """How one submission is answered instead of being accepted."""

    INVALID_NUMBER = "invalid number"  # refused for good, in the provider's own status code
    RATE_LIMITED = "rate limited"  # a 429 with Retry-After: 1
    BROKEN = "broken"  # a 500
    HANG = "hang"  # accepted and recorded, but the answer never comes


@dataclass(frozen=True)
class Submission:
    """One submission the fake was sent, and its HTTP answer (or the one a hang withheld)."""

    to: str
    status: int
    at: float  # time.monotonic()


class Switches:
    """Per-number switches that a fake reads as each fax goes on (set from the test's thread)."""

    def __init__(self) -> None:
        self.held: set[str] = set()  # numbers whose faxes wait, queued, until released
        self.dropped: set[str] = set()  # numbers whose webhooks are all lost
        self.repeated: set[str] = set()  # numbers whose final webhook comes twice

    def drop_webhooks(self, number: str) -> None:
        self.dropped.add(number)

    def repeat_webhooks(self, number: str) -> None:
        self.repeated.add(number)

    def hold(self, number: str) -> None:
        self.held.add(number)

    def release(self, number: str) -> None:
        self.held.discard(number)


class FakeProvider(Protocol):
    def outcome(self, number: str, *outcomes: Outcome) -> None: ...

    def refuse_next(self, number: str, *refusals: Refusal) -> None: ...

    def drop_webhooks(self, number: str) -> None: ...

    def repeat_webhooks(self, number: str) -> None: ...

    def hold(self, number: str) -> None: ...

    def release(self, number: str) -> None: ...

    def crowd(self, number: str, others: int) -> None:
        """``others`` faxes of another deployment, newer than ours, so listed first; one fax a
        page, so that a search for ours pages past them. They are not among ``job_ids``."""
        ...

    def listed_pages(self) -> int:
        """How many pages of faxes it was asked to list."""
        ...

    def job_ids(self, number: str) -> list[str]:
        """The faxes it accepted to this number, oldest first."""
        ...

    def job_states(self, number: str) -> list[str]:
        """Their states, in the provider's own words."""
        ...

    def references(self, number: str) -> list[str | None]:
        """The reference each of those faxes carries back to us, however the provider keeps it."""
        ...

    def submissions(self, number: str) -> list[Submission]: ...

    def final_answers(self, number: str) -> list[int]:
        """What our web app answered to each final webhook about faxes to this number."""
        ...
