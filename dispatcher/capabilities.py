"""What each kind of channel can do, known from its name alone.

The action files, the planner, the store and the web app know a channel by its name (from a
file or a row), not as a built channel: they ask here instead of comparing the name to "fax".
Each built channel answers with the same entry (``Channel.capabilities``), and the channel
contract suite checks that what it does agrees. A new kind of channel is one entry here and its
channel class; the places that ask need no change.

Imports nothing of ours, as ``models`` (beside which it sits): the action model asks too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator


@dataclass(frozen=True)
class Capabilities:
    # The target's field holding the address this channel reaches, and what it is called.
    address: str
    noun: str
    # A ``cc`` target rides along on the letters to the ``to`` targets rather than getting a
    # letter of its own (an email's Cc; a fax carries no copy).
    copies: bool = False
    # The letter goes out as a PDF: the fax font must be on the sending host.
    pdf: bool = False
    # Handed to a provider whose final word comes later (the letter waits ``submitted``).
    provider: bool = False
    # The recipient's line takes one letter at a time, each for about this many seconds; None:
    # no line (letters to one address go as fast as pacing lets them).
    line_seconds: float | None = None
    # After its last failure a letter may go again by the target's ``fallback`` channel.
    falls_back: bool = False

    @property
    def line(self) -> bool:
        return self.line_seconds is not None


KINDS: dict[str, Capabilities] = {
    "email": Capabilities(address="email", noun="email address", copies=True),
    "fax": Capabilities(
        address="fax",
        noun="fax number",
        pdf=True,
        provider=True,
        line_seconds=120.0,  # a fax of a page or two, dialled, sent and hung up
        falls_back=True,
    ),
}


def of(channel: str) -> Capabilities:
    """The capabilities of the channel named ``channel``; KeyError for a name that is none."""
    return KINDS[channel]


def named(able: Callable[[Capabilities], bool]) -> tuple[str, ...]:
    """The channels that can do what ``able`` asks, e.g. ``named(lambda c: c.provider)``."""
    return tuple(name for name, can in KINDS.items() if able(can))


def _known(name: str) -> str:
    if name not in KINDS:
        raise ValueError(f"{name!r} is not a channel (the channels: {', '.join(KINDS)})")
    return name


# A channel's name in an action file: one of the kinds above (a new kind needs no change there).
Channel = Annotated[str, AfterValidator(_known)]
