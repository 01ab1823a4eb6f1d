"""The web app in-process for ASGI tests: a store with one user per role, and logged-in clients."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import httpx

from dispatcher.accounts import Role, hash_password
from dispatcher.settings import Settings
from dispatcher.store import Store
from dispatcher.web import app_for

PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


def web_settings(tmp_path: Path, **extra: object) -> Settings:
    root = Path(__file__).resolve().parent.parent
    values = {
        "database_url": f"sqlite:///{tmp_path / 'd.db'}",
        "actions_dir": root / "config" / "actions",
        "templates_dir": root / "templates",
        "outbox": tmp_path / "outbox",
        "fax_outbox": tmp_path / "fax-outbox",
        **extra,
    }
    return Settings.model_validate(values)


def add_users(store: Store) -> None:
    now = dt.datetime.now(dt.UTC)
    hashed = hash_password(PASSWORD)  # argon2 is slow on purpose: hash once for every role
    for role in Role:
        store.accounts.add(role.label, role, hashed, now)


def client(settings: Settings, store: Store) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app_for(settings, store), client=("192.0.2.10", 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


async def log_in(web: httpx.AsyncClient, name: str, password: str = PASSWORD) -> httpx.Response:
    page = await web.get("/login")
    return await web.post(
        "/login", data={"name": name, "password": password, "csrf": csrf_of(page.text), "next": "/"}
    )
