"""The web app: one ASGI app for three audiences, each a subpackage of route modules mounted by
``app``: staff/ (the dashboard and its pages, behind a login), public/ (the supporters' own
pages) and machine/ (the CRM API, /metrics, providers' webhooks, fax media). They never import
each other; what they share (auth, bearer, pages, session, context, limits) sits here.

It talks to the store through a worker thread (the store is synchronous) and holds no state of
its own, so several processes can serve it in front of one database.
"""

from __future__ import annotations

from dispatcher.web.app import app_for, create_app
from dispatcher.web.bearer import TOKEN_MIN, check_tokens
from dispatcher.web.context import Context, context

__all__ = ["TOKEN_MIN", "Context", "app_for", "check_tokens", "context", "create_app"]
