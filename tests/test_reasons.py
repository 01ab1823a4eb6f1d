"""The reasons written to a letter's ``last_error``: the stored wording of every version, and
each text a writer makes read back as its reason."""

from __future__ import annotations

import pytest

from dispatcher.models import HoldKind
from dispatcher.store.reasons import Reason, gave_up, last_reply, unsigned_language

# Rows written by earlier versions keep meaning the same: these texts never change.
STORED = {
    Reason.WITHDRAWN: "consent withdrawn",
    Reason.LAPSED: "consent ended or expired",
    Reason.NARROWED: "consent changed: channel withdrawn",
    Reason.FORGOTTEN: "supporter forgotten",
    Reason.CLOSED_BY_STAFF: "the action was closed by staff",
    Reason.MONTHLY_CAP: "waiting for next month: the supporter's monthly cap is reached",
}


@pytest.mark.parametrize("reason", list(STORED))
def test_a_stored_reason_keeps_its_words(reason: Reason) -> None:
    assert reason.value == STORED[reason] and Reason.of(STORED[reason]) is reason


def test_a_reason_with_words_of_its_own_is_read_back() -> None:
    assert unsigned_language("de") == "the letter is now written in de, which the supporter does not sign"
    assert Reason.of(unsigned_language("de")) is Reason.UNSIGNED_LANGUAGE
    given_up = gave_up(3, "451 4.3.0 try again later")
    assert given_up == "gave up after 3 attempts: 451 4.3.0 try again later"
    assert Reason.of(given_up) is Reason.GAVE_UP and last_reply(given_up) == "451 4.3.0 try again later"
    # A server's own words are no reason of ours, whatever they say.
    assert Reason.of("550 5.1.1 gave up") is None and last_reply("550 no such user") == "550 no such user"


def test_every_reason_says_who_cancelled_and_holds_keep_their_kinds() -> None:
    assert all(reason.cancellation().startswith("cancelled") for reason in Reason)
    assert [h.value for h in HoldKind] == ["check", "sending"]
