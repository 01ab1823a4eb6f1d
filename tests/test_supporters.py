"""CSV import: supporters and the consent they gave, every bad row reported by number and column,
nothing half-imported."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import pytest

from dispatcher.people.csv_import import KnownScopes, SupporterFileError, import_file, import_valid
from dispatcher.store import Store
from tests.conftest import ROOT

NOW = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
REQUIRED = [
    "email",
    "name",
    "language",
    "city",
    "country",
    "scope",
    "channels",
    "consent_version",
    "opted_in_at",
]
OPTIONAL = ["languages", "name_display", "monthly_cap", "expires_at", "receipts", "replies"]
HEADER = ",".join(REQUIRED) + "\n"
OK = "a@example.net,Ann,en,Leeds,GB,act,email,v1,2025-01-01T10:00:00+00:00\n"
BASE = dict(zip(REQUIRED, OK.strip().split(","), strict=True))
KNOWN = KnownScopes(frozenset({"act", "other"}), frozenset({"urgent"}))


def line(**values: str) -> str:
    """A row like OK, with some columns changed (and optional ones added: pass them all alike)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow({**BASE, **values}.values())
    return out.getvalue()


def csv_file(tmp_path: Path, *rows: str, header: str = HEADER) -> Path:
    path = tmp_path / "s.csv"
    path.write_text(header + "".join(rows), encoding="utf-8")
    return path


def problems_of(store: Store, path: Path, known: KnownScopes = KNOWN) -> list[str]:
    with pytest.raises(SupporterFileError) as caught:
        import_file(store, path, known, NOW)
    assert store.supporter_count() == 0
    return caught.value.problems


def test_demo_file_imports(store: Store) -> None:
    known = KnownScopes(frozenset({"demo-xinjiang"}))
    assert import_file(store, ROOT / "config" / "demo-supporters.csv", known, NOW) == 6
    signer = store.find_signer("lin.xiaowen@example.net")
    assert signer is not None and signer.name == "林小文" and signer.country == "TW"
    held = store.people.export("wang.fang@example.net")
    assert held is not None
    [consent] = held["consents"]
    assert (consent["scope"], consent["channels"], consent["name_display"]) == (
        "demo-xinjiang",
        "email,fax",
        "name",
    )
    assert (consent["languages"], consent["text_version"]) == ("en zh-Hans", "2025-03")


def test_every_bad_row_is_reported_and_nothing_is_written(store: Store, tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        OK,
        line(email="not-an-email"),
        line(email="c@example.net", name="Eve\r\nBcc: x@example.com"),
        line(email="d@example.net", language="xx-Nope"),
        line(email="e@example.net", country="ZZ"),
        line(email="f@example.net", scope="nope"),
        line(email="g@example.net", opted_in_at="2025-01-01T10:00:00"),
        line(email="h@example.net", opted_in_at="yesterday"),
        line(email="A@example.net", name="Ann again"),
        line(email="i@example.net", name=""),
        line(email="j@example.net", opted_in_at="2099-01-01T10:00:00+00:00"),
        line(email="k@example.net", channels=""),
        line(email="l@example.net", consent_version=""),
    )
    expected = [
        ("row 3", "email: 'not-an-email' is not a valid email"),
        ("row 4", "name contains a control character"),
        ("row 5", "language: 'xx-Nope' is not a known BCP 47"),
        ("row 6", "country 'ZZ' is not an ISO 3166"),
        ("row 7", "scope: unknown action id(s) nope"),
        ("row 8", "opted_in_at needs a UTC offset"),
        ("row 9", "opted_in_at 'yesterday' is not an ISO 8601"),
        ("row 10", "email a@example.net already appears in row 2"),
        ("row 11", "name is empty"),
        ("row 12", "opted_in_at is in the future"),
        ("row 13", "channels is empty"),
        ("row 14", "consent_version is empty"),
    ]
    problems = problems_of(store, path)
    assert len(problems) == len(expected), problems
    for problem, (row, text) in zip(problems, expected, strict=True):
        assert problem.startswith(f"{row}: {text}"), problem


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"scope": ""}, "scope is empty"),
        (
            {"scope": "act;tag:nope;gone"},
            "scope: unknown action id(s) gone, and no action has the tag(s) nope",
        ),
        ({"scope": "tag:"}, "scope: no action has the tag(s) "),
        ({"channels": "post"}, "channels: unknown channel(s) post"),
        ({"channels": "email;sms"}, "channels: unknown channel(s) sms"),
        ({"channels": " ; "}, "channels is empty"),
        ({"consent_version": "v" * 65}, "consent_version is longer than 64 characters"),
        ({"consent_version": "v1\u202e"}, "consent_version contains an invisible text-direction"),
        ({"languages": "en;xx-Nope"}, "languages: 'xx-Nope' is not a known BCP 47"),
        ({"name_display": "initials"}, "name_display 'initials' is not one of full, name"),
        ({"monthly_cap": "0"}, "monthly_cap '0' is not a whole number from 1 to 1000"),
        ({"monthly_cap": "1001"}, "monthly_cap '1001' is not a whole number"),
        ({"monthly_cap": "ten"}, "monthly_cap 'ten' is not a whole number"),
        ({"monthly_cap": "1_0"}, "monthly_cap '1_0' is not a whole number"),
        ({"monthly_cap": "5.0"}, "monthly_cap '5.0' is not a whole number"),
        ({"expires_at": "2027-01-01T00:00:00"}, "expires_at needs a UTC offset"),
        ({"expires_at": "soon"}, "expires_at 'soon' is not an ISO 8601"),
        ({"expires_at": "2025-01-01T09:00:00+00:00"}, "expires_at is not after opted_in_at"),
        ({"expires_at": "2025-01-01T11:00:00+01:00"}, "expires_at is not after opted_in_at"),  # same instant
        ({"receipts": "daily"}, "receipts 'daily' is not one of off, weekly, monthly"),
    ],
)
def test_bad_consent_columns_are_named(
    store: Store, tmp_path: Path, values: dict[str, str], problem: str
) -> None:
    optional = {c: "" for c in OPTIONAL}
    path = csv_file(tmp_path, line(**{**optional, **values}), header=",".join(REQUIRED + OPTIONAL) + "\n")
    [found] = problems_of(store, path)
    assert found.startswith(f"row 2: {problem}"), found


def test_every_problem_of_a_row_is_reported_at_once(store: Store, tmp_path: Path) -> None:
    path = csv_file(tmp_path, line(name="", scope="nope", channels="", consent_version=""))
    [problem] = problems_of(store, path)
    assert problem == (
        "row 2: name is empty; scope: unknown action id(s) nope; channels is empty: give email, fax or both; "
        "consent_version is empty"
    )


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (
            "email,name,language,city,country,actions,opted_in_at",
            "missing column(s) scope, channels, consent_version (the actions column is now called scope)",
        ),
        ("email,name,language,city,country,scope,opted_in_at", "missing column(s) channels, consent_version"),
        (",".join([*REQUIRED, "monthly_caps"]), "unknown column 'monthly_caps': is it monthly_cap?"),
        (",".join([*REQUIRED, "expires"]), "unknown column 'expires': is it expires_at?"),
    ],
)
def test_missing_and_misspelt_columns(store: Store, tmp_path: Path, header: str, problem: str) -> None:
    path = csv_file(tmp_path, header=header + "\n")
    assert problems_of(store, path) == [f"row 1: {problem}"]


def test_other_columns_of_a_crm_export_are_ignored(store: Store, tmp_path: Path) -> None:
    path = csv_file(tmp_path, "17,VIP," + OK, header="crm_id,segment," + HEADER)
    assert import_file(store, path, KNOWN, NOW) == 1


def test_missing_columns_and_ragged_rows(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("email,name\nx@example.net,X\n")
    with pytest.raises(SupporterFileError, match="problem"):
        import_file(store, path, KNOWN, NOW)
    path = csv_file(tmp_path, OK, "b@example.net,Bob,en\n")
    assert problems_of(store, path) == ["row 3: wrong number of fields"]


def test_the_consent_terms_are_recorded(store: Store, tmp_path: Path) -> None:
    values = {
        "scope": "tag:urgent;other;all;other",
        "channels": "fax;EMAIL;email",
        "languages": "zh-hans;en;ZH-HANS;en-gb",
        "name_display": "Name",
        "monthly_cap": "12",
        "expires_at": "2027-01-01T08:00:00+08:00",
        "receipts": "weekly",
        "replies": "direct",
    }
    header = ",".join(REQUIRED + OPTIONAL) + "\n"
    assert import_file(store, csv_file(tmp_path, line(**values), header=header), KNOWN, NOW) == 1
    held = store.people.export("a@example.net")
    assert held is not None and held["receipts"] == "weekly"
    consents = {c["scope"]: c for c in held["consents"]}
    assert sorted(consents) == ["all", "other", "tag:urgent"]
    terms = {
        k: consents["other"][k] for k in ("channels", "languages", "name_display", "monthly_cap", "replies")
    }
    # One order for channels and for languages, written as the action files write tags.
    assert terms == {
        "channels": "email,fax",
        "languages": "en en-GB zh-Hans",
        "name_display": "name",
        "monthly_cap": 12,
        "replies": "direct",
    }
    assert consents["other"]["expires_at"] == "2027-01-01T00:00:00+00:00"
    assert consents["other"]["text_version"] == "v1" and consents["other"]["source"] == "import"


def test_language_tags_written_as_locales_are_kept_as_bcp_47(store: Store, tmp_path: Path) -> None:
    """Babel reads en_GB as en-GB; kept as written it would match no letter's language (the planner
    compares them as text), and the consent would sign nothing."""
    header = ",".join([*REQUIRED, "languages"]) + "\n"
    row = line(language="EN_gb", languages="en_GB;zh_hans")
    assert import_file(store, csv_file(tmp_path, row, header=header), KNOWN, NOW) == 1
    held = store.people.export("a@example.net")
    assert held is not None and held["language"] == "en-GB"
    [consent] = held["consents"]
    assert consent["languages"] == "en-GB zh-Hans"


def test_replies_go_to_the_organisation_unless_the_row_says_direct(store: Store, tmp_path: Path) -> None:
    header = ",".join([*REQUIRED, "replies"]) + "\n"
    rows = [line(replies=""), line(email="b@example.net", replies="Direct")]
    assert import_file(store, csv_file(tmp_path, *rows, header=header), KNOWN, NOW) == 2
    held = {e: store.people.export(e) for e in ("a@example.net", "b@example.net")}
    assert {e: [c["replies"] for c in h["consents"]] for e, h in held.items() if h} == {
        "a@example.net": ["organisation"],
        "b@example.net": ["direct"],
    }
    wrong = csv_file(tmp_path, line(replies="supporter"), header=header)
    with pytest.raises(SupporterFileError) as caught:
        import_file(store, wrong, KNOWN, NOW)
    assert caught.value.problems == ["row 2: replies 'supporter' is not one of organisation, direct"]


def test_scope_and_channels_decide_what_is_planned(store: Store, tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        line(email="tagged@example.net", scope="tag:urgent", channels="email"),
        line(email="faxonly@example.net", scope="act", channels="fax"),
        line(email="elsewhere@example.net", scope="other", channels="email;fax"),
    )
    import_file(store, path, KNOWN, NOW)
    pairs = [("t1", "email"), ("t1", "fax")]
    assert store.plan("act", pairs, NOW, tags=("urgent",)) == 2  # tagged by email, faxonly by fax
    assert store.plan("other", pairs, NOW) == 2


def test_a_later_file_with_other_channels_changes_the_consent(store: Store, tmp_path: Path) -> None:
    import_file(store, csv_file(tmp_path, OK), KNOWN, NOW)
    assert import_file(store, csv_file(tmp_path, line(channels="email;fax")), KNOWN, NOW) == 1
    held = store.people.export("a@example.net")
    assert held is not None
    assert [e["kind"] for e in held["consent_events"]] == ["granted", "confirmed", "changed"]
    live = [c for c in held["consents"] if c["ended_at"] is None]
    assert [c["channels"] for c in live] == ["email,fax"]
    # The same file again changes nothing: channels listed the other way round are the same.
    import_file(store, csv_file(tmp_path, line(channels="fax;email")), KNOWN, NOW)
    held = store.people.export("a@example.net")
    assert held is not None and len(held["consent_events"]) == 3


def test_large_import_is_one_transaction(store: Store, tmp_path: Path) -> None:
    rows = [line(email=f"p{i}@example.net", name=f"Person {i}", scope="all") for i in range(2500)]
    assert import_file(store, csv_file(tmp_path, *rows), KnownScopes(), NOW) == 2500
    assert store.supporter_count() == 2500


@pytest.mark.parametrize(
    ("column", "value", "code"),
    [
        ("name", "Ann \u202eeeL", "U+202E"),  # RIGHT-TO-LEFT OVERRIDE: "Ann Lee" shown reversed
        ("name", "\u2067Ann\u2069", "U+2067"),
        ("name", "Ann\u200f Lee", "U+200F"),
        ("name", "Ann\u061c Lee", "U+061C"),
        ("city", "Leeds\u202a", "U+202A"),
        ("city", "Le\u2066eds", "U+2066"),
        ("name", "Ann\u200e", "U+200E"),
    ],
)
def test_text_direction_controls_are_refused(
    store: Store, tmp_path: Path, column: str, value: str, code: str
) -> None:
    path = csv_file(tmp_path, OK, line(email="b@example.net", **{column: value}))
    [problem] = problems_of(store, path)
    assert problem.startswith(f"row 3: {column} ") and code in problem and "direction" in problem, problem


def test_names_in_right_to_left_scripts_are_fine(store: Store, tmp_path: Path) -> None:
    path = csv_file(
        tmp_path, line(email="r@example.net", name="سارا أحمد", language="ar", city="القاهرة", country="EG")
    )
    assert import_file(store, path, KNOWN, NOW) == 1


FIELDS = {
    "email": ("{v}@example.net", 320),
    "name": ("{v}", 200),
    "language": ("{v}", 35),
    "city": ("{v}", 200),
    "country": ("{v}", 16),
    "scope": ("{v}", 4096),
    "channels": ("{v}", 64),
    "consent_version": ("{v}", 64),
    "opted_in_at": ("{v}", 64),
    "languages": ("{v}", 200),
    "name_display": ("{v}", 16),
    "monthly_cap": ("{v}", 16),
    "expires_at": ("{v}", 64),
    "receipts": ("{v}", 16),
    "replies": ("{v}", 16),
}


@pytest.mark.parametrize("column", FIELDS)
def test_a_huge_field_is_reported_by_row_and_column(store: Store, tmp_path: Path, column: str) -> None:
    template, limit = FIELDS[column]
    optional = {c: "" for c in OPTIONAL}
    huge = line(**{**optional, column: template.format(v="x" * 1_000_000)})
    path = csv_file(tmp_path, line(**optional), huge, header=",".join(REQUIRED + OPTIONAL) + "\n")
    [problem] = problems_of(store, path)
    assert problem == f"row 3: {column} is longer than {limit:,} characters", problem[:300]


def test_a_field_too_large_to_read_is_reported_with_its_row(store: Store, tmp_path: Path) -> None:
    path = csv_file(tmp_path, OK, OK.replace("a@", "b@"), f'c@example.net,"{"x" * 5_000_000}",en\n', OK)
    [problem] = problems_of(store, path)
    assert problem.startswith("row 4: a field is longer than") and "characters" in problem, problem[:300]


def test_limits_match_the_database_columns() -> None:
    from dispatcher.store import schema

    columns = schema.supporters.c
    for column in ("email", "name", "language", "city"):
        length = columns[column].type.length  # type: ignore[attr-defined]
        assert FIELDS[column][1] == length, column
    consents = schema.consents.c
    for column, stored in (
        ("consent_version", "text_version"),
        ("languages", "languages"),
        ("channels", "channels"),
    ):
        assert FIELDS[column][1] <= consents[stored].type.length, column  # type: ignore[attr-defined]


def test_skip_invalid_imports_the_good_rows_and_writes_the_bad_ones_aside(
    store: Store, tmp_path: Path
) -> None:
    path = csv_file(
        tmp_path,
        line(email="ok1@example.net", scope="all"),
        line(email="not-an-email", name='=HYPERLINK("http://x")', scope="all"),
        line(email="ok2@example.net", scope="all"),
        line(email="ok1@example.net", name="Twice", scope="all"),
        line(email="ok3@example.net", channels="pigeon", scope="all"),
    )
    rejects = tmp_path / "rejected.csv"
    written, bad = import_valid(store, path, KNOWN, NOW, rejects)
    assert (written, bad) == (2, 3) and store.supporter_count() == 2
    assert rejects.stat().st_mode & 0o077 == 0  # people's details: owner-only
    rows = list(csv.reader(rejects.open(encoding="utf-8")))
    assert rows[0] == ["row", *REQUIRED, *OPTIONAL, "problem"]
    assert [r[0] for r in rows[1:]] == ["3", "5", "6"]
    assert rows[1][1] == "not-an-email" and rows[1][2].startswith("'=")  # no formula in a spreadsheet
    assert "already appears in row 2" in rows[2][-1] and "channels: unknown channel(s) pigeon" in rows[3][-1]


def test_an_old_rejects_file_becomes_owner_only_and_a_symlink_is_refused(
    store: Store, tmp_path: Path
) -> None:
    path = csv_file(tmp_path, OK, line(email="b@example.net", channels="pigeon"))
    rejects = tmp_path / "rejected.csv"
    rejects.write_text("last week's\n", encoding="utf-8")
    rejects.chmod(0o644)
    assert import_valid(store, path, KNOWN, NOW, rejects) == (1, 1)
    assert rejects.stat().st_mode & 0o777 == 0o600
    elsewhere = tmp_path / "world-readable.csv"
    elsewhere.write_text("", encoding="utf-8")
    planted = tmp_path / "planted.csv"
    planted.symlink_to(elsewhere)
    with pytest.raises(SupporterFileError) as refused:
        import_valid(store, csv_file(tmp_path, line(email="c@example.net")), KNOWN, NOW, planted)
    assert "symbolic link" in refused.value.problems[0]
    assert elsewhere.read_text(encoding="utf-8") == "" and store.supporter_count() == 1


def test_a_corrected_rejects_file_imports(store: Store, tmp_path: Path) -> None:
    path = csv_file(tmp_path, OK, line(email="b@example.net", channels="pigeon"))
    rejects = tmp_path / "rejected.csv"
    assert import_valid(store, path, KNOWN, NOW, rejects) == (1, 1)
    rejects.write_text(rejects.read_text(encoding="utf-8").replace("pigeon", "fax"), encoding="utf-8")
    assert import_file(store, rejects, KNOWN, NOW) == 1 and store.supporter_count() == 2


def test_known_scopes_come_from_the_actions() -> None:
    from dispatcher.actions.files import load_actions

    actions = load_actions(ROOT / "config" / "actions").actions
    known = KnownScopes.of(actions.values())
    assert known.actions == frozenset(actions) and "demo-xinjiang" in known.actions
    assert known.tags == frozenset(t for a in actions.values() for t in a.tags)
