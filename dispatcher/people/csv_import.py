"""Supporters and their consents from a CRM's CSV export: validated whole before anything is written.

Required columns: ``email,name,language,city,country,scope,channels,consent_version,opted_in_at``.
``scope`` is ``all``, ``tag:<tag>`` (every action with that campaign tag) or action ids, separated
by ``;``; ``channels`` is ``email``, ``fax`` or ``email;fax``; ``consent_version`` names the consent
text the supporter agreed to; ``opted_in_at`` is when they agreed (ISO 8601 with an offset).
Optional columns: ``languages`` (the letters' languages they sign, ``;``-separated BCP 47 tags;
empty: any), ``name_display`` (``full``: name, city and country; ``name``: the name alone),
``monthly_cap`` (letters per month, 1–1000), ``expires_at`` (ISO 8601 with an offset, after
``opted_in_at``), ``receipts`` (``off``, ``weekly`` or ``monthly``; empty: left as it was) and
``replies`` (``organisation``: a target's reply reaches the organisation, the letter carries no
address of the supporter; ``direct``: their address is the letter's Reply-To; empty: organisation).

A file with any bad row imports nothing, and every bad row is reported with its row number (the
header is row 1, as in a spreadsheet) and each column's problem; with ``--skip-invalid`` the good
rows are imported and the bad ones written, with their problems, to a rejects file.

``parse_row`` is also what the CRM API validates a consent with, so both accept the same things;
each column's rule is in ``people.fields``, which the opt-in form's checks use too.
"""

from __future__ import annotations

import csv
import datetime as dt
import difflib
import errno
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

from dispatcher.models import SupporterRecord, Terms
from dispatcher.people import fields
from dispatcher.people.fields import NAME_DISPLAYS, RECEIPTS, REPLIES

# Still imported from here by the CLI and tests; its home is people.fields.
from dispatcher.people.fields import KnownScopes as KnownScopes
from dispatcher.sanitize import csv_writer
from dispatcher.store import Store

COLUMNS = (
    "email",
    "name",
    "language",
    "city",
    "country",
    "scope",
    "channels",
    "consent_version",
    "opted_in_at",
)
OPTIONAL = ("languages", "name_display", "monthly_cap", "expires_at", "receipts", "replies")
# csv refuses fields over 131,072 characters by default, so a bigger one could not be named by
# its column. Above this, the row is reported without it: the rest of the file cannot be trusted.
CSV_FIELD_LIMIT = 4 * 1024 * 1024
T = TypeVar("T")
NONE: tuple[str, ...] = ()


class SupporterFileError(Exception):
    def __init__(self, path: Path, problems: list[str]) -> None:
        super().__init__(f"{path}: {len(problems)} problem(s); nothing was imported")
        self.path = path
        self.problems = problems


class RowError(ValueError):
    """A row (or an API request) with problems: column → what is wrong with it."""

    def __init__(self, problems: Mapping[str, str]) -> None:
        super().__init__("; ".join(problems.values()))
        self.problems = dict(problems)


class _Fields:
    """Reads a row column by column, keeping each column's first problem instead of stopping at
    it, so one pass tells the CRM's operator everything to fix in the row."""

    def __init__(self, row: Mapping[str, str]) -> None:
        self.row = row
        self.problems: dict[str, str] = {}

    def get(self, column: str, parse: Callable[[str], T], default: T) -> T:
        try:
            return parse(fields.bounded(self.row.get(column) or "", column))
        except ValueError as exc:
            self.problems[column] = str(exc)
            return default


def _items(value: str) -> tuple[str, ...]:
    """A ``;``-separated list's items (people.fields drops the blanks and repeats)."""
    return tuple(value.split(";"))


def _terms(row: _Fields) -> Terms:
    return Terms(
        channels=row.get("channels", lambda v: fields.channels(_items(v)), NONE),
        languages=row.get("languages", lambda v: fields.languages(_items(v)), NONE),
        name_display=row.get("name_display", fields.choice("name_display", NAME_DISPLAYS), "")
        or NAME_DISPLAYS[0],
        monthly_cap=row.get("monthly_cap", fields.monthly_cap, None),
        replies=row.get("replies", fields.choice("replies", REPLIES), "") or REPLIES[0],
        expires_at=row.get("expires_at", fields.moment("expires_at", None), None),
        text_version=row.get("consent_version", lambda v: fields.text(v, "consent_version", True), ""),
    )


def parse_row(row: Mapping[str, str], known: KnownScopes, now: dt.datetime) -> SupporterRecord:
    """One CSV row as a supporter and their consent, or ``RowError`` naming each bad column and
    its problem. Missing optional columns read as empty."""
    cells = _Fields(row)
    email = cells.get("email", fields.email, "")
    name = cells.get("name", lambda v: fields.text(v, "name", required=True), "")
    language = cells.get("language", fields.language, "")
    city = cells.get("city", lambda v: fields.text(v, "city", required=False), "")
    country = cells.get("country", fields.country, "")
    scopes = cells.get("scope", lambda v: fields.scopes(_items(v), known), NONE)
    opted_in = cells.get("opted_in_at", fields.moment("opted_in_at", now), None) or now
    terms = _terms(cells)
    receipts = cells.get("receipts", fields.choice("receipts", RECEIPTS), "") or None  # None: left as it was
    if terms.expires_at and "opted_in_at" not in cells.problems and terms.expires_at <= opted_in:
        cells.problems["expires_at"] = "expires_at is not after opted_in_at"
    if cells.problems:
        raise RowError(cells.problems)
    return SupporterRecord(
        email, name, language, city, country, scopes, opted_in, terms=terms, receipts=receipts
    )


def _read(path: Path, reader: csv.DictReader[str], number: int) -> dict[str, str] | None:
    """The next row, or None at the end; a row csv cannot read stops the file there."""
    try:
        return next(reader)
    except StopIteration:
        return None
    except csv.Error as exc:
        problem = (
            f"a field is longer than {CSV_FIELD_LIMIT:,} characters"
            if "field limit" in str(exc)
            else f"this row cannot be read as CSV ({exc})"
        )
        raise SupporterFileError(path, [f"row {number}: {problem}"]) from exc


def header_problem(header: Iterable[str]) -> str | None:
    """What is wrong with a header: a required column missing, or a column that looks like a
    misspelt consent column (a cap or an expiry silently ignored would be sending beyond what the
    supporter agreed to). Other columns, as CRM exports carry, are ignored."""
    names = list(header)
    problems = []
    if missing := [c for c in COLUMNS if c not in names]:
        hint = (
            " (the actions column is now called scope)" if "scope" in missing and "actions" in names else ""
        )
        problems.append(f"missing column(s) {', '.join(missing)}{hint}")
    for name in names:
        close = difflib.get_close_matches(name, COLUMNS + OPTIONAL, n=1, cutoff=0.8)
        if close and name not in COLUMNS + OPTIONAL:
            problems.append(f"unknown column {name!r}: is it {close[0]}?")
    return "; ".join(problems) or None


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    # csv's limit is process-wide; only ever raised here, so no other reader gets a lower one.
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        try:
            header = reader.fieldnames or []
        except csv.Error as exc:
            raise SupporterFileError(path, [f"row 1: the header cannot be read as CSV ({exc})"]) from exc
        if problem := header_problem(header):
            raise SupporterFileError(path, [f"row 1: {problem}"])
        number = 2
        while (row := _read(path, reader, number)) is not None:
            if None in row or any(v is None for v in row.values()):
                raise SupporterFileError(path, [f"row {number}: wrong number of fields"])
            yield number, row
            number += 1


def bad_rows(path: Path, known: KnownScopes, now: dt.datetime) -> tuple[int, dict[int, str]]:
    """Every row checked: how many rows, and the problem of each bad one by row number. A file
    that cannot be read to its end (not UTF-8, a broken CSV row) raises ``SupporterFileError``
    listing every problem up to there: what follows such a row cannot be trusted."""
    problems: dict[int, str] = {}
    seen: dict[str, int] = {}
    count = 0
    try:
        for number, row in _rows(path):
            count += 1
            try:
                record = parse_row(row, known, now)
            except ValueError as exc:
                problems[number] = str(exc)
                continue
            if record.email in seen:
                problems[number] = f"email {record.email} already appears in row {seen[record.email]}"
            seen[record.email] = number
    except (UnicodeDecodeError, SupporterFileError) as exc:
        fatal = [f"the file is not UTF-8: {exc}"] if isinstance(exc, UnicodeDecodeError) else exc.problems
        raise SupporterFileError(path, [f"row {n}: {p}" for n, p in problems.items()] + fatal) from None
    return count, problems


def validate_file(path: Path, known: KnownScopes, now: dt.datetime) -> int:
    """Check every row; raises ``SupporterFileError`` listing all problems. Returns the row count."""
    count, problems = bad_rows(path, known, now)
    if problems:
        raise SupporterFileError(path, [f"row {n}: {p}" for n, p in problems.items()])
    return count


def import_file(
    store: Store,
    path: Path,
    known: KnownScopes,
    now: dt.datetime,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Validate the whole file, then write it in one transaction."""
    validate_file(path, known, now)
    return store.import_supporters(_records(path, known, now, set(), progress), now)


def import_valid(
    store: Store,
    path: Path,
    known: KnownScopes,
    now: dt.datetime,
    rejects: Path,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """Import the good rows and write the bad ones, with their problems, to ``rejects``
    (owner-only: it holds people's details). Returns (rows imported, rows rejected)."""
    _, problems = bad_rows(path, known, now)
    with os.fdopen(_open_rejects(rejects), "w", newline="", encoding="utf-8") as out:
        writer = csv_writer(out)
        # Every column the importer reads, so that the file can be corrected and imported again.
        writer.writeheader(["row", *COLUMNS, *OPTIONAL, "problem"])
        for number, row in _rows(path):
            if number in problems:
                values = (row.get(c) or "" for c in COLUMNS + OPTIONAL)
                writer.writerow([number, *values, problems[number]])
    written = store.import_supporters(_records(path, known, now, set(problems), progress), now)
    return written, len(problems)


def _open_rejects(rejects: Path) -> int:
    """The rejects file, owner-only even when it was there before (with a laxer mode), and never
    through a symbolic link: whoever planted one would choose where people's details go."""
    try:
        fd = os.open(rejects, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise SupporterFileError(rejects, ["it is a symbolic link; name a regular file"]) from None
    os.fchmod(fd, 0o600)
    return fd


def _records(
    path: Path,
    known: KnownScopes,
    now: dt.datetime,
    skip: set[int],
    progress: Callable[[int], None] | None,
) -> Iterator[SupporterRecord]:
    for number, row in _rows(path):
        if progress and number % 10_000 == 0:
            progress(number - 1)
        if number not in skip:
            yield parse_row(row, known, now)
