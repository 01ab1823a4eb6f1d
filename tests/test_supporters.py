"""CSV import: every bad row reported by number, nothing half-imported."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest

from dispatcher.store import Store
from dispatcher.supporters import SupporterFileError, import_file, import_valid
from tests.conftest import ROOT

NOW = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
HEADER = "email,name,language,city,country,actions,opted_in_at\n"
OK = "a@example.net,Ann,en,Leeds,GB,act,2025-01-01T10:00:00+00:00\n"


def csv_file(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "s.csv"
    path.write_text(HEADER + "".join(rows), encoding="utf-8")
    return path


def test_demo_file_imports(store: Store) -> None:
    known = {"demo-xinjiang"}
    assert import_file(store, ROOT / "config" / "demo-supporters.csv", known, NOW) == 6
    signer = store.find_signer("lin.xiaowen@example.net")
    assert signer is not None and signer.name == "林小文" and signer.country == "TW"


def test_every_bad_row_is_reported_and_nothing_is_written(store: Store, tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        OK,
        "not-an-email,Bob,en,,,act,2025-01-01T10:00:00+00:00\n",
        '"c@example.net","Eve\r\nBcc: x@example.com",en,,,act,2025-01-01T10:00:00+00:00\n',
        "d@example.net,Dan,xx-Nope,,,act,2025-01-01T10:00:00+00:00\n",
        "e@example.net,Eva,en,,ZZ,act,2025-01-01T10:00:00+00:00\n",
        "f@example.net,Fay,en,,,nope,2025-01-01T10:00:00+00:00\n",
        "g@example.net,Gil,en,,,act,2025-01-01T10:00:00\n",
        "h@example.net,Hal,en,,,act,yesterday\n",
        "A@example.net,Ann again,en,,,act,2025-01-01T10:00:00+00:00\n",
        "i@example.net,,en,,,act,2025-01-01T10:00:00+00:00\n",
        "j@example.net,Jo,en,,,act,2099-01-01T10:00:00+00:00\n",
    )
    with pytest.raises(SupporterFileError) as caught:
        import_file(store, path, {"act"}, NOW)
    problems = caught.value.problems
    expected = [
        ("row 3", "valid email"),
        ("row 4", "control character"),
        ("row 5", "BCP 47"),
        ("row 6", "ISO 3166"),
        ("row 7", "unknown action id(s) nope"),
        ("row 8", "UTC offset"),
        ("row 9", "ISO 8601"),
        ("row 10", "already appears in row 2"),
        ("row 11", "name is empty"),
        ("row 12", "in the future"),
    ]
    assert len(problems) == len(expected)
    for problem, (row, text) in zip(problems, expected, strict=True):
        assert problem.startswith(row + ":") and text in problem, problem
    assert store.supporter_count() == 0


def test_missing_columns_and_ragged_rows(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("email,name\nx@example.net,X\n")
    with pytest.raises(SupporterFileError, match="problem"):
        import_file(store, path, {"act"}, NOW)
    path = csv_file(tmp_path, OK, "b@example.net,Bob,en\n")
    with pytest.raises(SupporterFileError) as caught:
        import_file(store, path, {"act"}, NOW)
    assert caught.value.problems == ["row 3: wrong number of fields"]
    assert store.supporter_count() == 0


def test_large_import_is_one_transaction(store: Store, tmp_path: Path) -> None:
    rows = [f"p{i}@example.net,Person {i},en,,,all,2025-01-01T10:00:00+00:00\n" for i in range(2500)]
    assert import_file(store, csv_file(tmp_path, *rows), set(), NOW) == 2500
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
    name, city = (value, "Leeds") if column == "name" else ("Ann", value)
    path = csv_file(tmp_path, OK, f"b@example.net,{name},en,{city},GB,act,2025-01-01T10:00:00+00:00\n")
    with pytest.raises(SupporterFileError) as caught:
        import_file(store, path, {"act"}, NOW)
    [problem] = caught.value.problems
    assert problem.startswith(f"row 3: {column} ") and code in problem and "direction" in problem, problem
    assert store.supporter_count() == 0


def test_names_in_right_to_left_scripts_are_fine(store: Store, tmp_path: Path) -> None:
    path = csv_file(tmp_path, "r@example.net,سارا أحمد,ar,القاهرة,EG,act,2025-01-01T10:00:00+00:00\n")
    assert import_file(store, path, {"act"}, NOW) == 1


FIELDS = {
    "email": ("{v}@example.net", 320),
    "name": ("{v}", 200),
    "language": ("{v}", 35),
    "city": ("{v}", 200),
    "country": ("{v}", 16),
    "actions": ("{v}", 4096),
    "opted_in_at": ("{v}", 64),
}


@pytest.mark.parametrize("column", FIELDS)
def test_a_huge_field_is_reported_by_row_and_column(store: Store, tmp_path: Path, column: str) -> None:
    template, limit = FIELDS[column]
    values = dict(zip(HEADER.strip().split(","), OK.strip().split(","), strict=True))
    values[column] = template.format(v="x" * 1_000_000)
    path = csv_file(tmp_path, OK, ",".join(values.values()) + "\n")
    with pytest.raises(SupporterFileError) as caught:
        import_file(store, path, {"act"}, NOW)
    [problem] = caught.value.problems
    assert problem == f"row 3: {column} is longer than {limit:,} characters", problem[:300]
    assert store.supporter_count() == 0


def test_a_field_too_large_to_read_is_reported_with_its_row(store: Store, tmp_path: Path) -> None:
    path = csv_file(tmp_path, OK, OK.replace("a@", "b@"), f'c@example.net,"{"x" * 5_000_000}",en\n', OK)
    with pytest.raises(SupporterFileError) as caught:
        import_file(store, path, {"act"}, NOW)
    [problem] = caught.value.problems
    assert problem.startswith("row 4: a field is longer than") and "characters" in problem, problem[:300]
    assert store.supporter_count() == 0


def test_limits_match_the_database_columns() -> None:
    from dispatcher.store import schema

    columns = schema.supporters.c
    for column in ("email", "name", "language", "city"):
        length = columns[column].type.length  # type: ignore[attr-defined]
        assert FIELDS[column][1] == length, column


def test_skip_invalid_imports_the_good_rows_and_writes_the_bad_ones_aside(
    store: Store, tmp_path: Path
) -> None:
    path = csv_file(
        tmp_path,
        "ok1@example.net,Ok One,en,,,all,2025-01-01T00:00:00+00:00\n",
        'not-an-email,"=HYPERLINK(""http://x"")",en,,,all,2025-01-01T00:00:00+00:00\n',
        "ok2@example.net,Ok Two,en,,,all,2025-01-01T00:00:00+00:00\n",
        "ok1@example.net,Twice,en,,,all,2025-01-01T00:00:00+00:00\n",
        "ok3@example.net,Ok Three,xx-Nope,,,all,2025-01-01T00:00:00+00:00\n",
    )
    rejects = tmp_path / "rejected.csv"
    written, bad = import_valid(store, path, {"act"}, NOW, rejects)
    assert (written, bad) == (2, 3) and store.supporter_count() == 2
    assert rejects.stat().st_mode & 0o077 == 0  # people's details: owner-only
    rows = list(csv.reader(rejects.open(encoding="utf-8")))
    assert rows[0] == [
        "row",
        "email",
        "name",
        "language",
        "city",
        "country",
        "actions",
        "opted_in_at",
        "problem",
    ]
    assert [r[0] for r in rows[1:]] == ["3", "5", "6"]
    assert rows[1][1] == "not-an-email" and rows[1][2].startswith("'=")  # no formula in a spreadsheet
    assert "already appears in row 2" in rows[2][-1]
