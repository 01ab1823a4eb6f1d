"""Supporters from a CRM's CSV export: validated whole before anything is written.

Columns: ``email,name,language,city,country,actions,opted_in_at``. ``actions`` is ``all`` or a
``;``-separated list of action ids; ``opted_in_at`` is when the supporter agreed to letters being
sent in their name (ISO 8601 with an offset). A file with any bad row imports nothing, and every
bad row is reported with its row number (the header is row 1, as in a spreadsheet); with
``--skip-invalid`` the good rows are imported and the bad ones written, with their problems, to a
rejects file.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import re
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

from babel import Locale

from dispatcher.config import normalise_email, parse_language
from dispatcher.sanitize import csv_writer
from dispatcher.store import Store, SupporterRecord

COLUMNS = ("email", "name", "language", "city", "country", "actions", "opted_in_at")
NAME_LIMIT = 200  # characters, as the database columns (store/schema.py)
CITY_LIMIT = 200
WORDS_LIMIT = 600  # a supporter's own paragraph: a few sentences, not a second letter
# Longest value of each column, checked before anything else so that no problem quotes a huge
# value. Email and language are as wide as their database columns; the others parse into less.
LIMITS = {
    "email": 320,
    "name": NAME_LIMIT,
    "language": 35,
    "city": CITY_LIMIT,
    "country": 16,
    "actions": 4096,
    "opted_in_at": 64,
}
# csv refuses fields over 131,072 characters by default, so a bigger one could not be named by
# its column. Above this, the row is reported without it: the rest of the file cannot be trusted.
CSV_FIELD_LIMIT = 4 * 1024 * 1024
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Bidirectional controls (embeddings, overrides, isolates, marks) are invisible and reorder what
# follows them: "Ann \u202eeeL" is displayed "Ann Lee" reversed, in a From: an official reads.
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# CLDR also names regions that are not countries (EU, UN, ZZ "unknown"…); keep ISO 3166 alpha-2.
_NOT_COUNTRIES = {"EU", "EZ", "UN", "QO", "XA", "XB", "ZZ"}
_TERRITORIES = {
    str(c) for c in Locale("en").territories if len(str(c)) == 2 and str(c).isalpha()
} - _NOT_COUNTRIES


class SupporterFileError(Exception):
    def __init__(self, path: Path, problems: list[str]) -> None:
        super().__init__(f"{path}: {len(problems)} problem(s); nothing was imported")
        self.path = path
        self.problems = problems


def _text(value: str, column: str, required: bool) -> str:
    value = value.strip()
    if required and not value:
        raise ValueError(f"{column} is empty")
    if found := _CONTROL.search(value):
        raise ValueError(
            f"{column} contains a control character (U+{ord(found[0]):04X}, such as a line break)"
        )
    if found := _BIDI.search(value):
        raise ValueError(
            f"{column} contains an invisible text-direction control character (U+{ord(found[0]):04X}) "
            "that changes how the text is shown"
        )
    return value


_MARKUP = re.compile(r"<[^>]*>|&[#\w]+;|\{[{%#]|[}%#]\}")
_LINE_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def clean_words(words: str) -> str:
    """A supporter's own paragraph as plain text: markup (HTML tags and entities, template
    delimiters), control and text-direction characters removed, spaces and blank lines tidied.
    Raises ``ValueError`` when longer than ``WORDS_LIMIT`` once cleaned."""
    text = _MARKUP.sub("", words.replace("\r\n", "\n"))
    text = _BIDI.sub("", _LINE_CONTROL.sub(" ", text))
    lines = [" ".join(line.split()) for line in text.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    if len(text) > WORDS_LIMIT:
        raise ValueError(f"your own words are longer than {WORDS_LIMIT} characters")
    return text


def _check_lengths(row: dict[str, str]) -> None:
    for column, limit in LIMITS.items():
        if len(row[column].strip()) > limit:
            raise ValueError(f"{column} is longer than {limit:,} characters")


def parse_row(row: dict[str, str], known_actions: Collection[str], now: dt.datetime) -> SupporterRecord:
    """One CSV row as a record, or ``ValueError`` naming the column and the problem."""
    _check_lengths(row)
    # Mailbox local parts are case-sensitive in theory only; a CRM export differs in case, not people.
    email = normalise_email(row["email"].strip()).lower()
    name = _text(row["name"], "name", required=True)
    language = row["language"].strip()
    try:
        parse_language(language)
    except ValueError as exc:
        raise ValueError(f"language: {exc}") from exc
    city = _text(row["city"], "city", required=False)
    country = row["country"].strip().upper()
    if country and country not in _TERRITORIES:
        raise ValueError(f"country {country!r} is not an ISO 3166 country code")
    scopes = tuple(dict.fromkeys(s.strip() for s in row["actions"].split(";") if s.strip()))
    if not scopes:
        raise ValueError("actions is empty: give 'all' or action ids separated by ';'")
    unknown = [s for s in scopes if s != "all" and s not in known_actions]
    if unknown:
        raise ValueError(f"actions: unknown action id(s) {', '.join(unknown)}")
    try:
        opted_in = dt.datetime.fromisoformat(row["opted_in_at"].strip())
    except ValueError as exc:
        raise ValueError(f"opted_in_at {row['opted_in_at']!r} is not an ISO 8601 date and time") from exc
    if opted_in.tzinfo is None:
        raise ValueError("opted_in_at needs a UTC offset (e.g. 2025-03-14T20:15:00+08:00)")
    if opted_in > now:
        raise ValueError("opted_in_at is in the future")
    return SupporterRecord(email, name, language, city, country, scopes, opted_in.astimezone(dt.UTC))


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


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    # csv's limit is process-wide; only ever raised here, so no other reader gets a lower one.
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        try:
            header = reader.fieldnames or []
        except csv.Error as exc:
            raise SupporterFileError(path, [f"row 1: the header cannot be read as CSV ({exc})"]) from exc
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise SupporterFileError(path, [f"row 1: missing column(s) {', '.join(missing)}"])
        number = 2
        while (row := _read(path, reader, number)) is not None:
            if None in row or any(v is None for v in row.values()):
                raise SupporterFileError(path, [f"row {number}: wrong number of fields"])
            yield number, row
            number += 1


def bad_rows(path: Path, known_actions: Collection[str], now: dt.datetime) -> tuple[int, dict[int, str]]:
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
                record = parse_row(row, known_actions, now)
            except ValueError as exc:
                problems[number] = str(exc)
                continue
            if record.email in seen:
                problems[number] = f"{record.email} already appears in row {seen[record.email]}"
            seen[record.email] = number
    except (UnicodeDecodeError, SupporterFileError) as exc:
        fatal = [f"the file is not UTF-8: {exc}"] if isinstance(exc, UnicodeDecodeError) else exc.problems
        raise SupporterFileError(path, [f"row {n}: {p}" for n, p in problems.items()] + fatal) from None
    return count, problems


def validate_file(path: Path, known_actions: Collection[str], now: dt.datetime) -> int:
    """Check every row; raises ``SupporterFileError`` listing all problems. Returns the row count."""
    count, problems = bad_rows(path, known_actions, now)
    if problems:
        raise SupporterFileError(path, [f"row {n}: {p}" for n, p in problems.items()])
    return count


def import_file(
    store: Store,
    path: Path,
    known_actions: Collection[str],
    now: dt.datetime,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Validate the whole file, then write it in one transaction."""
    validate_file(path, known_actions, now)
    return store.import_supporters(_records(path, known_actions, now, set(), progress), now)


def import_valid(
    store: Store,
    path: Path,
    known_actions: Collection[str],
    now: dt.datetime,
    rejects: Path,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """Import the good rows and write the bad ones, with their problems, to ``rejects``
    (owner-only: it holds people's details). Returns (rows imported, rows rejected)."""
    _, problems = bad_rows(path, known_actions, now)
    fd = os.open(rejects, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as out:
        writer = csv_writer(out)
        writer.writerow(["row", *COLUMNS, "problem"])
        for number, row in _rows(path):
            if number in problems:
                writer.writerow([number, *(row.get(c, "") for c in COLUMNS), problems[number]])
    written = store.import_supporters(_records(path, known_actions, now, set(problems), progress), now)
    return written, len(problems)


def _records(
    path: Path,
    known_actions: Collection[str],
    now: dt.datetime,
    skip: set[int],
    progress: Callable[[int], None] | None,
) -> Iterator[SupporterRecord]:
    for number, row in _rows(path):
        if progress and number % 10_000 == 0:
            progress(number - 1)
        if number not in skip:
            yield parse_row(row, known_actions, now)
