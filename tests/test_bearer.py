"""The one bearer-token check of /api and /metrics: both routes read ``Authorization`` alike, so a
header one of them refuses the other refuses too (each still answers in its own words)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from dispatcher.store import Store
from dispatcher.web.bearer import presented_token, token_matches
from tests.web_client import client, web_settings

TOKEN = "a-long-random-token-shared-by-both-routes-0123456789"
# (header, the status both routes answer): the scheme is read in any case and the token without
# the spaces around it; anything else is a refusal.
HEADERS: list[tuple[str | None, int]] = [
    (None, 401),
    ("", 401),
    ("Bearer", 401),
    ("Bearer ", 401),
    ("bearer  " + TOKEN + " ", 200),
    ("BEARER " + TOKEN, 200),
    ("Bearer " + TOKEN[:-1], 401),
    ("Bearer " + TOKEN + "x", 401),
    ("Bearer " + TOKEN.upper(), 401),
    ("Bearer\t" + TOKEN, 401),
    ("Bearer " + TOKEN + " " + TOKEN, 401),
    ("Basic " + TOKEN, 401),
    (TOKEN, 401),
]


@pytest.fixture
async def web(tmp_path: Path, store: Store) -> AsyncIterator[httpx.AsyncClient]:
    settings = web_settings(tmp_path, api_token=TOKEN, metrics_token=TOKEN)
    async with client(settings, store) as c:
        yield c


async def test_both_routes_answer_a_header_alike(web: httpx.AsyncClient) -> None:
    for header, status in HEADERS:
        headers = {} if header is None else {"Authorization": header}
        api = await web.get("/api/consents/nobody@example.net", headers=headers)
        metrics = await web.get("/metrics", headers=headers)
        # Past the token, the API answers 404 for a supporter it does not know.
        assert (api.status_code, metrics.status_code) == (404 if status == 200 else 401, status), header
        if status == 401:
            assert api.headers["www-authenticate"] == 'Bearer realm="api"'
            assert metrics.headers["www-authenticate"] == 'Bearer realm="metrics"'
            assert api.json() == {"error": "a bearer token is needed"}
            assert metrics.text == "a bearer token is needed\n"


def test_the_token_presented_is_read_from_the_header() -> None:
    assert presented_token("Bearer abc") == "abc"
    assert presented_token("bEaReR   abc  ") == "abc"
    assert presented_token("Basic abc") == ""
    assert presented_token("abc") == ""
    assert presented_token("") == ""


@pytest.mark.parametrize("configured", [None, SecretStr("")])
def test_no_token_configured_matches_nothing(configured: SecretStr | None) -> None:
    assert not token_matches(configured, "")
    assert not token_matches(configured, "anything")


def test_a_configured_token_matches_itself_only() -> None:
    assert token_matches(SecretStr(TOKEN), TOKEN)
    assert not token_matches(SecretStr(TOKEN), TOKEN[:-1])
    assert not token_matches(SecretStr(TOKEN), "")
    assert not token_matches(SecretStr(TOKEN), "é" * 3)  # not ASCII: no error, a refusal
