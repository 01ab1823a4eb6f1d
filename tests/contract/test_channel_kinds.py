"""A made-up third kind of channel ("postal": a PDF to a postal address, through a provider)
flows through the places that used to compare a channel's name to "fax": the action files,
the planner's pairs, the catalogue's font check, the dashboard's forecast and preview."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from dispatcher import capabilities
from dispatcher.accounts import Role
from dispatcher.actions.model import Action
from dispatcher.actions.planner import plan_action
from dispatcher.capabilities import Capabilities
from dispatcher.models import QueueCount
from dispatcher.sending.catalogue import faxes
from dispatcher.store import open_store
from dispatcher.store.explain import Context
from tests.campaigns.test_campaign_shapes import supporters
from tests.contract.world import action_data, write_action
from tests.support.forecast import needed_seconds
from tests.support.web_client import add_users, client, log_in, web_settings
from tests.unit.test_faxpdf import MISSING

POSTAL = Capabilities(address="address", noun="postal address", pdf=True, provider=True, line_seconds=30.0)
MINISTRY = {"address": {"Latn": "1 Ministry Road, Capital"}, "channels": ["postal"]}


@pytest.fixture
def postal(monkeypatch: pytest.MonkeyPatch) -> Iterator[Capabilities]:
    monkeypatch.setitem(capabilities.KINDS, "postal", POSTAL)
    yield POSTAL


def action(**how: dict[str, Any]) -> Action:
    return Action.model_validate(action_data(how))


def test_an_action_file_names_a_new_kind_by_its_address(postal: Capabilities) -> None:
    letter = action(minister=MINISTRY, embassy=MINISTRY | {"role": "cc"})
    # A kind that carries no copies gives a cc target a letter of its own.
    assert letter.delivery_pairs(("email", "postal")) == [("minister", "postal"), ("embassy", "postal")]
    with pytest.raises(ValidationError, match="channel 'postal' is listed but the target has no address"):
        action(minister={"channels": ["postal"]})
    with pytest.raises(ValidationError, match="'pigeon' is not a channel"):
        action(minister={"channels": ["pigeon"]})


def test_a_new_kind_that_carries_copies_copies(monkeypatch: pytest.MonkeyPatch, postal: Capabilities) -> None:
    monkeypatch.setitem(capabilities.KINDS, "postal", dataclasses.replace(postal, copies=True))
    letter = action(minister=MINISTRY, embassy=MINISTRY | {"role": "cc"})
    assert letter.delivery_pairs(("postal",)) == [("minister", "postal")]


def test_a_pdf_kind_needs_the_font_and_its_line_paces_the_forecast(postal: Capabilities) -> None:
    letter = action(minister=MINISTRY)
    assert faxes(letter, ("postal",)) and not faxes(letter, ("email",))
    pending = [QueueCount("a", "minister", "postal", "pending", 10, None)]
    settings = web_settings(Path("/nonexistent"), rate_per_target=1.0, rate_global=100.0)
    now = dt.datetime(2030, 1, 7, tzinfo=dt.UTC)
    assert needed_seconds(letter, pending, settings, now) == 9 * 30.0  # a line each, not the pacing's rate


def test_a_new_kind_that_falls_back_is_planned_with_its_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postal: Capabilities
) -> None:
    monkeypatch.setitem(capabilities.KINDS, "postal", dataclasses.replace(postal, falls_back=True))
    letter = action(minister=MINISTRY | {"email": "minister@example.org", "fallback": "email"})
    now = dt.datetime.now(dt.UTC)
    store = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    try:
        store.import_supporters(supporters(1), now)
        assert plan_action(store, letter, ("email", "postal"), now) == 1
        [delivery] = store.reports.find_delivery("a", "minister", "s0@example.net")
        said = store.reports.explain(delivery, now, Context())
    finally:
        store.close()
    assert said is not None and said.channel == "postal"
    assert "after its last failed attempt it goes by email" in said.details


@pytest.mark.skipif(bool(MISSING), reason=MISSING)
async def test_the_dashboard_previews_a_pdf_kind_as_a_pdf(tmp_path: Path, postal: Capabilities) -> None:
    # The one PDF made today is a fax's, whose letterhead names the number: the target has one.
    minister = MINISTRY | {"fax": "+442079460123"}
    write_action(
        tmp_path, {"minister": minister, "nobody": {"email": "n@example.org", "channels": ["email"]}}
    )
    settings = web_settings(tmp_path, actions_dir=tmp_path / "actions", templates_dir=tmp_path / "templates")
    store = open_store(settings.database_url)
    add_users(store)
    try:
        async with client(settings, store) as web:
            assert (await log_in(web, Role.VIEWER.label)).status_code == 303
            pdf = await web.get("/actions/a/preview?target=minister&channel=postal")
            missing = await web.get("/actions/a/preview?target=nobody&channel=postal")
    finally:
        store.close()
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert missing.status_code == 404 and "this target has no postal address" in missing.text


def test_kinds_are_named_by_what_they_can_do(postal: Capabilities) -> None:
    assert capabilities.named(lambda c: c.provider) == ("fax", "postal")
    assert capabilities.named(lambda c: c.copies) == ("email",)
    assert capabilities.of("fax").line and not capabilities.of("email").line
    assert capabilities.of("fax").line_seconds == 120.0
