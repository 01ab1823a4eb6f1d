"""The configured fax provider, built from the settings (secrets from the environment).

The factory sits above every provider and imports them; a provider takes what it needs to
build itself (``require``) from the interface below it, so nothing here is imported back.
"""

from __future__ import annotations

from collections.abc import Callable

from dispatcher.providers import FaxProvider
from dispatcher.providers.file import FileProvider
from dispatcher.providers.media import MediaHost
from dispatcher.providers.sinch import SinchProvider
from dispatcher.providers.telnyx import TelnyxProvider
from dispatcher.providers.twilio import TwilioProvider
from dispatcher.settings import Settings

Builder = Callable[[Settings, bytes, MediaHost | None], FaxProvider]

# DISPATCHER_FAX_PROVIDER → how to build it; anything else is the file provider.
BUILDERS: dict[str, Builder] = {
    "telnyx": TelnyxProvider.from_settings,
    "sinch": SinchProvider.from_settings,
    "twilio": TwilioProvider.from_settings,
}


def make_provider(settings: Settings, secret: bytes, media: MediaHost | None = None) -> FaxProvider:
    """Raises ``ValueError`` naming the missing or bad settings, never their values."""
    builder = BUILDERS.get(settings.fax_provider)
    if builder is None:
        return FileProvider(settings.fax_outbox)
    return builder(settings, secret, media)
