"""What every request handler reaches through the app: settings, store, fax provider, clock,
rate limits and the action files as last read."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.requests import Request

from dispatcher.actions.files import load_actions
from dispatcher.actions.model import Action
from dispatcher.providers import FaxProvider
from dispatcher.sending.backoff import Backoff
from dispatcher.settings import Settings
from dispatcher.store import Store
from dispatcher.web.limits import SlidingWindow


@dataclass
class Context:
    settings: Settings
    store: Store
    fax: FaxProvider
    fax_retry: Backoff
    clock: Callable[[], dt.datetime]
    # Failed logins per account and per address, per 15 minutes (see limits.py).
    by_account: SlidingWindow = field(default_factory=lambda: SlidingWindow(5, 900))
    by_address: SlidingWindow = field(default_factory=lambda: SlidingWindow(20, 900))
    # Opt-in forms accepted per client address and per email address, per hour (see optin.py).
    joins_by_address: SlidingWindow = field(default_factory=lambda: SlidingWindow(10, 3600))
    joins_by_email: SlidingWindow = field(default_factory=lambda: SlidingWindow(3, 3600))
    # Proofs sent per staff user and per address they go to, per hour (see staff/proof.py): a
    # proof is one email per letter of the action, so a few are plenty.
    proofs_by_user: SlidingWindow = field(default_factory=lambda: SlidingWindow(5, 3600))
    proofs_to_address: SlidingWindow = field(default_factory=lambda: SlidingWindow(5, 3600))
    # The action files as last read, and the names, times and sizes they were read at.
    loaded: tuple[tuple[tuple[str, int, int], ...], dict[str, Action]] | None = None

    def actions(self) -> dict[str, Action]:
        """The action files, parsed again only when one of them changed (a page would
        otherwise parse every YAML file on every request)."""
        folder = self.settings.actions_dir
        files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
        stamp = tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files)
        if self.loaded is None or self.loaded[0] != stamp:
            self.loaded = (stamp, load_actions(folder).actions)
        return self.loaded[1]


def context(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx
