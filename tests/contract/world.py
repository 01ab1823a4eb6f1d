"""The world a provider scenario runs in: an action faxing one target per number, our web app
on loopback (webhooks, fax media), a real SQLite file, and the provider's fake."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dispatcher.channels import make_channels
from dispatcher.models import AttemptRow
from dispatcher.sending.runtime import Dispatcher, utcnow
from dispatcher.settings import Settings
from dispatcher.store import Store, open_store
from dispatcher.web import app_for
from tests.campaigns.test_campaign_shapes import TEMPLATE, supporters
from tests.conftest import cli_env
from tests.contract.providers import Adapter
from tests.support import actions
from tests.support.asgi_server import serve
from tests.support.fax_servers.control import FakeProvider
from tests.support.processes import free_port

ACTION = "a"
# Ofcom keeps 020 7946 0000–0999 for drama: valid numbers that reach nobody.
MINISTER, EMBASSY = "+442079460123", "+442079460456"


@dataclass
class World:
    adapter: Adapter
    fake: FakeProvider
    settings: Settings
    store: Store
    values: dict[str, Any]  # the settings, as given

    def env(self, **extra: str) -> dict[str, str]:
        """The same settings for the real ``dispatcher`` command, in a clean environment."""
        tmp = Path(self.values["actions_dir"]).parent
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
        ours = {f"DISPATCHER_{k.upper()}": str(v) for k, v in self.values.items() if v is not None}
        return inherited | cli_env(tmp, tmp) | ours | extra

    def dispatcher(self, **overrides: Any) -> Dispatcher:
        settings = self.settings.model_copy(update=overrides)
        return Dispatcher(settings, self.store, make_channels(settings, self.store), worker_id="w")

    async def run_once(self) -> None:
        await asyncio.wait_for(self.dispatcher().run_once(), 30)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Dispatcher]:
        dispatcher = self.dispatcher()
        task = asyncio.create_task(dispatcher.run_forever())
        try:
            yield dispatcher
        finally:
            dispatcher.stop()
            await asyncio.wait_for(task, 15)

    def rows(self, target: str) -> list[AttemptRow]:
        return [a for a in self.store.attempt_log(ACTION, target) if a.channel == "fax"]

    def outcomes(self, target: str) -> list[str]:
        return [r.outcome for r in self.rows(target)]

    def status(self) -> dict[str, str]:
        return {r.target_id: r.status for r in self.store.queue_counts() if r.channel == "fax"}


def action_data(how: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """An action with a target per entry of ``how``: its id, and how it is reached."""
    targets = [
        {"id": t, "name": t.title(), "salutation": {"en": f"Dear {t.title()}"}, **h} for t, h in how.items()
    ]
    return actions.action_data(ACTION, targets, title="Fax action")


def write_action(tmp_path: Path, how: dict[str, dict[str, Any]]) -> None:
    """The action of ``action_data``, as a file, with its template."""
    actions.write_action(tmp_path / "actions", action_data(how))
    (tmp_path / "templates" / ACTION).mkdir(parents=True, exist_ok=True)
    (tmp_path / "templates" / ACTION / "en.j2").write_text(TEMPLATE)


def faxes(numbers: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {t: {"fax": n, "channels": ["fax"]} for t, n in numbers.items()}


@contextlib.contextmanager
def opened(tmp_path: Path, how: dict[str, dict[str, Any]], values: dict[str, Any]) -> Iterator[Store]:
    """The action written, a supporter imported, our web app serving ``values``' public URL."""
    write_action(tmp_path, how)
    settings = Settings.model_validate(values)
    store = open_store(settings.database_url)
    web_store = open_store(settings.database_url)  # the web app as its own process would
    try:
        store.import_supporters(supporters(1), utcnow())
        with serve(app_for(settings, web_store), int(values["public_url"].rsplit(":", 1)[1])):
            yield store
    finally:
        store.close()
        web_store.close()


def paths(tmp_path: Path) -> dict[str, Any]:
    """Where the world's files are: the SQLite file, ``write_action``'s folders, the outboxes."""
    return {
        "database_url": f"sqlite:///{tmp_path / 'd.db'}",
        "actions_dir": tmp_path / "actions",
        "templates_dir": tmp_path / "templates",
        "outbox": tmp_path / "outbox",
        "fax_outbox": tmp_path / "fax-outbox",
    }


def base_settings(tmp_path: Path) -> dict[str, Any]:
    return paths(tmp_path) | {
        "public_url": f"http://127.0.0.1:{free_port()}",
        "fax_retry_initial": 0.2,
        "fax_retry_max": 0.5,
        "retry_initial": 0.2,
        "retry_max": 1.0,
    }


@contextlib.contextmanager
def provider_world(
    tmp_path: Path, adapter: Adapter, numbers: dict[str, str] | None = None, **overrides: Any
) -> Iterator[World]:
    with adapter.serve(tmp_path) as (fake, provider):
        values = base_settings(tmp_path) | provider | overrides
        with opened(tmp_path, faxes(numbers or {"minister": MINISTER}), values) as store:
            yield World(adapter, fake, Settings.model_validate(values), store, values)


async def until(check: Callable[[], bool], what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.02)
