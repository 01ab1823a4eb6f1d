"""The configured fax provider, built from the settings (secrets from the environment)."""

from __future__ import annotations

from dispatcher.config import Settings
from dispatcher.providers import FaxProvider
from dispatcher.providers.media import MediaHost


def make_provider(settings: Settings, secret: bytes, media: MediaHost | None = None) -> FaxProvider:
    """Raises ``ValueError`` naming the missing or bad settings, never their values."""
    if settings.fax_provider == "telnyx":
        from dispatcher.providers.telnyx import TelnyxProvider

        return TelnyxProvider.from_settings(settings, secret, media)
    if settings.fax_provider == "sinch":
        from dispatcher.providers.sinch import SinchProvider

        return SinchProvider.from_settings(settings, secret, media)
    if settings.fax_provider == "twilio":
        from dispatcher.providers.twilio import TwilioProvider

        return TwilioProvider.from_settings(settings, secret, media)
    from dispatcher.providers.file import FileProvider

    return FileProvider(settings.fax_outbox)


def require(settings: Settings, *names: str) -> None:
    """Every one of these settings is set, or one error naming all that are missing."""
    missing = [f"DISPATCHER_{n.upper()}" for n in names if getattr(settings, n) in (None, "")]
    if missing:
        raise ValueError(f"fax provider {settings.fax_provider} needs {', '.join(missing)}")
