"""CSV import: every bad row reported by number, nothing half-imported."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from dispatcher.store import Store
from dispatcher.supporters import SupporterFileError, import_file
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
