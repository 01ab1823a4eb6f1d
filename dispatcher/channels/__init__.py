"""Channels deliver a rendered letter to one target: email now, fax next.

A channel turns (letter, target, signer) into something its transport can carry and reports
the outcome as a ``Reply`` or raises ``SendError`` with ``transient`` telling the scheduler
whether a later attempt may succeed. The interface is in ``base`` (what the channels import),
the channels built from the settings in ``factory``; both are exported here.
"""

from __future__ import annotations

from dispatcher.channels.base import Channel, Envelope, Reply, SendError, Unavailable
from dispatcher.channels.factory import IMPLEMENTED, make_channels, media_host

__all__ = [
    "IMPLEMENTED",
    "Channel",
    "Envelope",
    "Reply",
    "SendError",
    "Unavailable",
    "make_channels",
    "media_host",
]
