"""The three ways a consent comes in (a CSV row, the opt-in form, the CRM API) accept and refuse
the same values of each field they share, and hand the store the same normal form.

A seeded random loop per field: values drawn from valid ones, invalid ones and what lies between
(case, spaces, blanks, repeats, invisible and control characters, other scripts' digits), each
put in a valid submission of each entry point, through the adapters' own parsing (the CSV
importer's ``parse_row``, the form's ``check`` and ``record_of``, the API's ``consent_of``). A
difference each medium makes on purpose is stated in the field's ``Spec``: the form offers only
its page languages, the open actions' tags and letter languages, a cap up to 100 and digits from
any keyboard; the API takes the cap as a JSON number; each medium writes lists its own way.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dispatcher.actions.model import Action
from dispatcher.models import SupporterRecord
from dispatcher.people.csv_import import KnownScopes, RowError, parse_row
from dispatcher.web.machine.api import consent_of
from dispatcher.web.public import optin
from dispatcher.web.public.optin import LANGS
from tests.support.actions import action_data
from tests.support.web_client import web_settings

NOW = dt.datetime(2031, 1, 31, 10, 0, tzinfo=dt.UTC)
ROUNDS = 150  # values per field; the whole file runs in a few seconds
SKIP = object()  # a value the medium cannot express at all (the API's cap as text)
ACTIONS = [
    Action.model_validate(
        action_data(
            action_id,
            [{"id": "t1", "name": "T1", "email": "t1@example.org", "fax": "+33142000000"}],
            title=action_id,
            languages=languages,
            tags=tags,
        )
    )
    for action_id, languages, tags in (
        ("act", ["en", "zh-Hans"], ["urgent"]),
        ("other", ["fr"], ["urgent", "detention"]),
    )
]
KNOWN = KnownScopes.of(ACTIONS)
TAGS = {"urgent": ["act", "other"], "detention": ["other"]}
GENERAL = optin.Offer(None, TAGS, ["en", "fr", "zh-Hans"], ["email", "fax"])
FOR_ACT = optin.Offer(ACTIONS[0], {"urgent": ["act"]}, ["en", "zh-Hans"], ["email", "fax"])
ROW = {
    "email": "ann@example.net",
    "name": "Ann Lee",
    "language": "en",
    "city": "Leeds",
    "country": "GB",
    "scope": "all",
    "channels": "email;fax",
    "consent_version": "2026-11",
    "opted_in_at": NOW.isoformat(),
    "name_display": "full",
    "receipts": "off",
    "replies": "organisation",
}
FORM = {
    "name": "Ann Lee",
    "email": "ann@example.net",
    "city": "Leeds",
    "country": "GB",
    "language": "en",
    "scope": "all",
    "display": "full",
    "cap": "",
    "expiry": "none",
    "receipts": "off",
    "words": "",
    "agree": "yes",
    "replies": "organisation",
    "tags": [],
    "channels": ["email", "fax"],
    "sign": [],
}
INVISIBLE = ["\u200b", "\u202e", "\u2066", "\x00", "\n", "\t", "\u3164", "\xa0"]
WIDE = str.maketrans("0123456789", "０１２３４５６７８９")


@dataclass(frozen=True)
class Outcome:
    """What an entry point made of a value: its normal form, or the fields it refused."""

    value: object = None
    refused: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Spec:
    """A field as each medium holds it. ``form_offers``: whether the form, which offers less than
    a CSV file may hold, can take this normal form (None when the form never has the field)."""

    column: str  # the CSV column and the API's field
    form_key: str | None
    stored: Callable[[SupporterRecord], object]
    atoms: list[Any]
    is_list: bool = False
    form_offers: Callable[[object], bool] = lambda _: True
    to_csv: Callable[[Any], Any] = lambda v: v
    to_api: Callable[[Any], Any] = lambda v: v
    to_form: Callable[[Any], Any] = lambda v: v
    also_refused: dict[str, str] = field(default_factory=dict)


def mutate(value: str, rng: random.Random) -> str:
    """One of the ways the same value, or nearly it, arrives from a spreadsheet or a browser."""
    pick = rng.randrange(9)
    if pick == 0:
        return value.upper()
    if pick == 1:
        return value.title()
    if pick == 2:
        return f"  {value} "
    if pick == 3 and value:
        at = rng.randrange(len(value) + 1)
        return value[:at] + rng.choice(INVISIBLE) + value[at:]
    if pick == 4:
        return value.translate(WIDE)
    if pick == 5:
        return "0" * rng.randrange(1, 5) + value
    if pick == 6:
        return rng.choice(INVISIBLE)
    return value


def draw(spec: Spec, rng: random.Random) -> Any:
    if not spec.is_list:
        return mutate(rng.choice(spec.atoms), rng)
    count = rng.randrange(4)
    return [mutate(rng.choice(spec.atoms), rng) for _ in range(count)]


def csv_outcome(spec: Spec, value: Any) -> Outcome:
    try:
        record = parse_row({**ROW, spec.column: spec.to_csv(value)}, KNOWN, NOW)
    except RowError as exc:
        return Outcome(refused=frozenset(exc.problems))
    return Outcome(spec.stored(record))


def api_outcome(spec: Spec, value: Any) -> Outcome | None:
    given = spec.to_api(value)
    if given is SKIP:
        return None
    body = {**ROW, "scope": ["all"], "channels": ["email", "fax"], spec.column: given}
    body = {k: v for k, v in body.items() if v is not None}
    try:
        record = consent_of(body, KNOWN, NOW)
    except RowError as exc:
        return Outcome(refused=frozenset(exc.problems))
    return Outcome(spec.stored(record))


def form_outcome(spec: Spec, value: Any, offer: optin.Offer, tmp_path: Path) -> Outcome | None:
    given = spec.to_form(value)
    if given is SKIP or spec.form_key is None:
        return None
    values = {**FORM, spec.form_key: given} if not isinstance(given, dict) else {**FORM, **given}
    form, errors = optin.check(values, offer, "en", web_settings(tmp_path), NOW)
    if errors:
        return Outcome(refused=frozenset(errors))
    return Outcome(spec.stored(optin.record_of(json.dumps(form), NOW)))


def _scope_in_form(items: list[str]) -> object:
    """The general form's radio and checkboxes: all, or campaign tags; never action ids."""
    if [i.strip() for i in items] == ["all"]:
        return {"scope": "all", "tags": []}
    if items and all(i.startswith("tag:") for i in items):
        return {"scope": "tags", "tags": [i.removeprefix("tag:") for i in items]}
    return SKIP


def _cap_in_api(value: str) -> object:
    """JSON's number: only a value written as one (a CRM sends 5, not "05" or "５")."""
    if not value:
        return None
    return int(value) if value.isascii() and value.isdigit() and value == str(int(value)) else SKIP


def _choice_in_form(value: str) -> object:
    return value if value.strip() else SKIP  # a form's radio buttons always send one


SPECS = {
    "email": Spec(
        "email",
        "email",
        lambda r: r.email,
        ["ann@example.net", "Ann.Lee@Example.NET", "ann@bücher.example", "not-an-address", "", "a@b"],
    ),
    "name": Spec("name", "name", lambda r: r.name, ["Ann Lee", "李安", "", "x" * 201, "Zoë O'Neil"]),
    "city": Spec("city", "city", lambda r: r.city, ["Leeds", "", "São Paulo", "c" * 201]),
    "country": Spec("country", "country", lambda r: r.country, ["GB", "fr", "XX", "EU", "", "GBR"]),
    "language": Spec(
        "language",
        "language",
        lambda r: r.language,
        ["en", "fr", "zh-Hans", "zh_hans", "de", "es", "xx-nope", "", "en-GB", "en_gb"],
        form_offers=lambda v: v in LANGS,
    ),
    "scope": Spec(
        "scope",
        "scope",
        lambda r: r.scopes,
        ["all", "tag:urgent", "tag:detention", "tag:nope", "act", "other", "gone", ""],
        is_list=True,
        to_csv=";".join,
        to_form=_scope_in_form,
    ),
    "channels": Spec(
        "channels",
        "channels",
        lambda r: r.terms.channels,
        ["email", "fax", "post", ""],
        is_list=True,
        to_csv=";".join,
    ),
    "languages": Spec(
        "languages",
        "sign",
        lambda r: r.terms.languages,
        ["en", "fr", "zh-Hans", "zh-hans", "zh_Hans", "de", "xx-nope", ""],
        is_list=True,
        to_csv=";".join,
        form_offers=lambda v: all(tag in GENERAL.languages for tag in v),  # type: ignore[attr-defined]
    ),
    "name_display": Spec(
        "name_display",
        "display",
        lambda r: r.terms.name_display,
        ["full", "name", "nickname"],
        to_form=_choice_in_form,
    ),
    "receipts": Spec(
        "receipts",
        "receipts",
        lambda r: r.receipts,
        ["off", "weekly", "monthly", "daily"],
        to_form=_choice_in_form,
    ),
    "replies": Spec("replies", "replies", lambda r: r.terms.replies, ["organisation", "direct", "both", ""]),
    "monthly_cap": Spec(
        "monthly_cap",
        "cap",
        lambda r: r.terms.monthly_cap,
        ["", "1", "5", "50", "100", "101", "1000", "1001", "0", "-3", "2.5", "1_000", "+5", "٣"],
        form_offers=lambda v: v is None or int(v) <= optin.CAP_MAX,  # type: ignore[call-overload]
        to_api=_cap_in_api,
    ),
}


def ascii_digits(value: str) -> str:
    """The form takes digits from any keyboard (full-width ones from a Chinese or Japanese one)."""
    return "".join(str(int(c)) if c.isdecimal() else c for c in value)


def expected_of_form(spec: Spec, from_csv: Outcome) -> Outcome:
    """What the form should make of a value, from what the CSV importer made of it."""
    if from_csv.refused or not spec.form_offers(from_csv.value):
        return Outcome(refused=frozenset({spec.form_key or spec.column}))
    return from_csv


@pytest.mark.parametrize("name", list(SPECS))
def test_csv_form_and_api_accept_the_same_values_and_store_the_same(name: str, tmp_path: Path) -> None:
    spec, rng = SPECS[name], random.Random(f"fields-{name}")
    for _ in range(ROUNDS):
        value = draw(spec, rng)
        from_csv = csv_outcome(spec, value)
        assert from_csv.refused <= {spec.column}, (value, from_csv)
        from_api = api_outcome(spec, value)
        assert from_api is None or from_api == from_csv, (value, from_csv, from_api)
        form_value = ascii_digits(value) if name == "monthly_cap" else value
        csv_for_form = csv_outcome(spec, form_value) if form_value != value else from_csv
        from_form = form_outcome(spec, value, GENERAL, tmp_path)
        if from_form is not None:
            wanted = expected_of_form(spec, csv_for_form)
            assert from_form == wanted, (value, from_csv, from_form)


WORDS = [
    "Free him now.",
    "",
    "  ",
    "<b></b>",
    "a\u202eb",
    "x" * 601,
    "<i>Please</i> act &amp; free\n\n\n\nher",
]


def test_the_form_and_api_keep_the_same_own_words(tmp_path: Path) -> None:
    """The CSV has no words; the form (for one action) and the API clean them alike. Words that
    clean to nothing: the form keeps none (its box was left empty), the API keeps them empty (a
    CRM clearing what the supporter wrote before)."""
    rng = random.Random("fields-words")
    for _ in range(ROUNDS):
        text = mutate(rng.choice(WORDS), rng) + mutate(rng.choice(WORDS), rng)
        try:
            api = consent_of(
                {**ROW, "scope": ["act"], "channels": ["email"], "words": {"act": text}}, KNOWN, NOW
            )
        except RowError as exc:
            assert set(exc.problems) == {"words.act"}, exc.problems
            api = None
        values = {**FORM, "words": text}
        form, errors = optin.check(values, FOR_ACT, "en", web_settings(tmp_path), NOW)
        assert (api is None) == ("words" in errors), (text, errors)
        if api is not None:
            wanted = {k: v for k, v in api.words.items() if v}
            assert optin.record_of(json.dumps(form), NOW).words == wanted, text
