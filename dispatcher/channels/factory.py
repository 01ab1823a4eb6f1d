"""The channels a dispatcher sends through, built from its settings.

Above the interface (``base``) and every channel, which import only the interface: the package
exports both, so ``dispatcher.channels`` is still the one place callers import from.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from dispatcher import capabilities
from dispatcher.channels.base import Channel
from dispatcher.channels.email import EmailChannel, MaildirTransport, MessageBuilder, SmtpTransport
from dispatcher.channels.fax import FaxChannel
from dispatcher.providers.factory import make_provider
from dispatcher.providers.media import MediaHost
from dispatcher.settings import Settings
from dispatcher.store import Store

# The channels this version can send through: every kind it knows (the channel contract suite
# checks that ``make_channels`` builds each).
IMPLEMENTED = tuple(capabilities.KINDS)


def make_channels(settings: Settings, store: Store) -> dict[str, Channel]:
    """The channels this dispatcher can send through, from its settings."""
    secret = store.instance_secret()
    transport = (
        SmtpTransport(settings.smtp_url, settings.smtp_pool, settings.smtp_timeout, settings.smtp_cafile)
        if settings.smtp_url
        else MaildirTransport(settings.outbox)
    )
    fax = make_provider(settings, secret, media_host(settings, store))
    built: list[Channel] = [
        EmailChannel(transport, MessageBuilder(settings.sender, secret)),
        FaxChannel(fax, secret, settings.fax_font),
    ]
    return {channel.name: channel for channel in built}


def media_host(settings: Settings, store: Store) -> MediaHost | None:
    """Where providers that fetch a fax (by URL) find it: the web app, if it is published."""
    if not settings.public_url:
        return None

    async def put(reference: str, pdf: bytes) -> None:
        await asyncio.to_thread(store.put_media, reference, pdf, dt.datetime.now(dt.UTC))

    return MediaHost(settings.public_url, store.instance_secret(), put)
