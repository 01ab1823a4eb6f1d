"""The one bearer-token check of the routes programs call: the CRM API and ``/metrics``.

Each has its own token setting and answers a refusal in its own words (JSON for the API, text for
Prometheus), but the header is read, and the token compared, here only: a header one route
refuses, the other refuses too. Without its token setting a route does not exist (404, as any
unknown path), so a scan cannot tell a disabled API from no API.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping

from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from dispatcher.settings import Settings
from dispatcher.web.context import context

# A bearer token is the whole credential of the API (people's details) and of /metrics, and
# nothing limits the guesses: a short one could be found by trying.
TOKEN_MIN = 32

TokenSetting = Callable[[Settings], SecretStr | None]
# What a route answers a missing or wrong token, given the challenge header to send.
Unauthorised = Callable[[Mapping[str, str]], Response]


def check_tokens(settings: Settings) -> None:
    """ValueError naming a bearer token that is set but too short (never showing it)."""
    for name, token in (("API", settings.api_token), ("METRICS", settings.metrics_token)):
        if token and 0 < len(token.get_secret_value()) < TOKEN_MIN:
            raise ValueError(
                f"DISPATCHER_{name}_TOKEN is shorter than {TOKEN_MIN} characters; "
                "make one with `openssl rand -hex 32`"
            )


def presented_token(authorization: str) -> str:
    """The token of an ``Authorization: Bearer …`` header (scheme in any case), else ""."""
    scheme, _, given = authorization.partition(" ")
    return given.strip() if scheme.lower() == "bearer" else ""


def token_matches(configured: SecretStr | None, given: str) -> bool:
    """Whether ``given`` is the configured token; an unset or empty setting matches nothing."""
    token = configured.get_secret_value() if configured else ""
    # Constant time: how long a refusal takes says nothing of how much of the token was right.
    return bool(token) and hmac.compare_digest(given.encode(), token.encode())


def _configured(request: Request, setting: TokenSetting) -> SecretStr | None:
    return setting(context(request).settings)


def holds_token(request: Request, setting: TokenSetting) -> bool:
    """Whether the request carries the token of this setting (False when it is not set)."""
    given = presented_token(request.headers.get("authorization", ""))
    return token_matches(_configured(request, setting), given)


def refusal(
    request: Request, setting: TokenSetting, realm: str, unauthorised: Unauthorised
) -> Response | None:
    """None when the request carries the token; else 404 when the setting is not set (the route
    does not exist), or the route's own 401 with a ``Bearer`` challenge for this realm."""
    configured = _configured(request, setting)
    if not (configured and configured.get_secret_value()):
        return PlainTextResponse("Not Found", status_code=404)
    if not holds_token(request, setting):
        return unauthorised({"WWW-Authenticate": f'Bearer realm="{realm}"'})
    return None
