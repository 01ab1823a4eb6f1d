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

``parse_row`` is also what the CRM API validates a consent with, so both accept the same things.
"""

from __future__ import annotations

import csv
import datetime as dt
import difflib
import errno
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from babel import Locale

from dispatcher.actions.model import Action
from dispatcher.addresses import normalise_email
from dispatcher.language import parse_language
from dispatcher.models import CITY_LIMIT, NAME_LIMIT, WORDS_LIMIT, SupporterRecord, Terms
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
CHANNELS = ("email", "fax")
NAME_DISPLAYS = ("full", "name")
REPLIES = ("organisation", "direct")  # the first is the default
RECEIPTS = ("off", "weekly", "monthly")
MONTHLY_CAP = range(1, 1001)
# Longest value of each column, checked before anything else so that no problem quotes a huge
# value. Email, language, languages and consent_version are as wide as their database columns;
# the others parse into less.
LIMITS = {
    "email": 320,
    "name": NAME_LIMIT,
    "language": 35,
    "city": CITY_LIMIT,
    "country": 16,
    "scope": 4096,
    "channels": 64,
    "consent_version": 64,
    "opted_in_at": 64,
    "languages": 200,
    "name_display": 16,
    "monthly_cap": 16,
    "expires_at": 64,
    "receipts": 16,
    "replies": 16,
}
# csv refuses fields over 131,072 characters by default, so a bigger one could not be named by
# its column. Above this, the row is reported without it: the rest of the file cannot be trusted.
CSV_FIELD_LIMIT = 4 * 1024 * 1024
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Bidirectional controls (embeddings, overrides, isolates, marks) are invisible and reorder what
# follows them: "Ann \u202eeeL" is displayed "Ann Lee" reversed, in a From: an official reads.
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# What shows nothing on its own: format characters (zero-width space, word joiner…), spaces, and
# the blank letters (Hangul fillers, the Braille blank). A name of these alone is an empty name.
_BLANK_CATEGORIES = {"Cf", "Zs", "Zl", "Zp", "Mn", "Me", "Cc"}
_BLANK_LETTERS = set("\u115f\u1160\u3164\uffa0\u2800\u180e")
# CLDR also names regions that are not countries (EU, UN, ZZ "unknown"…); keep ISO 3166 alpha-2.
_NOT_COUNTRIES = {"EU", "EZ", "UN", "QO", "XA", "XB", "ZZ"}
TERRITORIES = {
    str(c) for c in Locale("en").territories if len(str(c)) == 2 and str(c).isalpha()
} - _NOT_COUNTRIES
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


@dataclass(frozen=True)
class KnownScopes:
    """What a consent's scope may name: the actions' ids and their campaign tags."""

    actions: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()

    @classmethod
    def of(cls, actions: Iterable[Action]) -> KnownScopes:
        listed = list(actions)
        return cls(frozenset(a.id for a in listed), frozenset(t for a in listed for t in a.tags))


def text_field(value: str, column: str, required: bool) -> str:
    value = value.strip()
    if all(c in _BLANK_LETTERS or unicodedata.category(c) in _BLANK_CATEGORIES for c in value):
        if required:
            raise ValueError(f"{column} is empty" + (" (only invisible characters)" if value else ""))
        return ""
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


class _Fields:
    """Reads a row column by column, keeping each column's first problem instead of stopping at
    it, so one pass tells the CRM's operator everything to fix in the row."""

    def __init__(self, row: Mapping[str, str]) -> None:
        self.row = row
        self.problems: dict[str, str] = {}

    def get(self, column: str, parse: Callable[[str], T], default: T) -> T:
        value = (self.row.get(column) or "").strip()
        if len(value) > LIMITS[column]:
            self.problems[column] = f"{column} is longer than {LIMITS[column]:,} characters"
            return default
        try:
            return parse(value)
        except ValueError as exc:
            self.problems[column] = str(exc)
            return default


def _items(value: str) -> tuple[str, ...]:
    """A ``;``-separated list, blanks dropped, each item once, in its first place."""
    return tuple(dict.fromkeys(item.strip() for item in value.split(";") if item.strip()))


def parse_email(value: str) -> str:
    if not value:
        raise ValueError("email is empty")
    try:
        # Mailbox local parts are case-sensitive in theory only; CRM exports differ in case, not people.
        return normalise_email(value).lower()
    except ValueError as exc:
        raise ValueError(f"email: {exc}") from exc


def _language(value: str, column: str = "language") -> str:
    if not value:
        raise ValueError(f"{column} is empty")
    try:
        parse_language(value)
    except ValueError as exc:
        raise ValueError(f"{column}: {exc}") from exc
    return value


def parse_country(value: str) -> str:
    country = value.upper()
    if country and country not in TERRITORIES:
        raise ValueError(f"country {country!r} is not an ISO 3166 country code")
    return country


def _scopes(value: str, known: KnownScopes) -> tuple[str, ...]:
    scopes = _items(value)
    if not scopes:
        raise ValueError("scope is empty: give all, tag:<tag> or action ids")
    tags = [s.removeprefix("tag:") for s in scopes if s.startswith("tag:")]
    ids = [s for s in scopes if s != "all" and not s.startswith("tag:")]
    wrong = []
    if unknown := [i for i in ids if i not in known.actions]:
        wrong.append(f"unknown action id(s) {', '.join(unknown)}")
    if untagged := [t for t in tags if t not in known.tags]:
        wrong.append(f"no action has the tag(s) {', '.join(untagged)}")
    if wrong:
        raise ValueError("scope: " + ", and ".join(wrong))
    return scopes


def _channels(value: str) -> tuple[str, ...]:
    given = {c.lower() for c in _items(value)}
    if not given:
        raise ValueError("channels is empty: give email, fax or both")
    if unknown := sorted(given - set(CHANNELS)):
        raise ValueError(
            f"channels: unknown channel(s) {', '.join(unknown)} (the channels are email and fax)"
        )
    # One order, so that the same channels listed the other way round are not a changed consent.
    return tuple(c for c in CHANNELS if c in given)


def _bcp47_case(tag: str) -> str:
    """A tag in its conventional case (zh-Hans, en-GB), as action files write them: the planner
    matches a consent's languages to a letter's as text."""
    first, *rest = tag.split("-")
    parts = [first.lower()]
    for part in rest:
        alpha = part.isalpha()
        parts.append(
            part.title()
            if alpha and len(part) == 4
            else part.upper()
            if alpha and len(part) == 2
            else part.lower()
        )
    return "-".join(parts)


def _languages(value: str) -> tuple[str, ...]:
    tags = [_bcp47_case(_language(tag, "languages")) for tag in _items(value)]
    return tuple(sorted(set(tags)))  # a set: the order they were listed in means nothing


def _choice(column: str, allowed: tuple[str, ...]) -> Callable[[str], str]:
    """One of ``allowed``, in any case; empty when not given."""

    def parse(value: str) -> str:
        if value and value.lower() not in allowed:
            raise ValueError(f"{column} {value!r} is not one of {', '.join(allowed)}")
        return value.lower()

    return parse


def _cap(value: str) -> int | None:
    if not value:
        return None
    # int() would also take "+5", " 5" and "1_000": only plain digits are a count of letters.
    if not value.isascii() or not value.isdigit() or int(value) not in MONTHLY_CAP:
        raise ValueError(f"monthly_cap {value!r} is not a whole number from 1 to {MONTHLY_CAP[-1]}")
    return int(value)


def _moment(column: str, now: dt.datetime | None) -> Callable[[str], dt.datetime | None]:
    """A date-time column; with ``now``, it is required and may not be in the future."""

    def parse(value: str) -> dt.datetime | None:
        if not value:
            if now is None:
                return None
            raise ValueError(f"{column} is empty")
        try:
            at = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"{column} {value!r} is not an ISO 8601 date and time") from exc
        if at.tzinfo is None:
            raise ValueError(f"{column} needs a UTC offset (e.g. 2025-03-14T20:15:00+08:00)")
        if now is not None and at > now:
            raise ValueError(f"{column} is in the future")
        return at.astimezone(dt.UTC)

    return parse


def _terms(fields: _Fields) -> Terms:
    return Terms(
        channels=fields.get("channels", _channels, NONE),
        languages=fields.get("languages", _languages, NONE),
        name_display=fields.get("name_display", _choice("name_display", NAME_DISPLAYS), "") or "full",
        monthly_cap=fields.get("monthly_cap", _cap, None),
        replies=fields.get("replies", _choice("replies", REPLIES), "") or REPLIES[0],
        expires_at=fields.get("expires_at", _moment("expires_at", None), None),
        text_version=fields.get(
            "consent_version", lambda v: text_field(v, "consent_version", required=True), ""
        ),
    )


def parse_row(row: Mapping[str, str], known: KnownScopes, now: dt.datetime) -> SupporterRecord:
    """One CSV row as a supporter and their consent, or ``RowError`` naming each bad column and
    its problem. Missing optional columns read as empty."""
    fields = _Fields(row)
    email = fields.get("email", parse_email, "")
    name = fields.get("name", lambda v: text_field(v, "name", required=True), "")
    language = fields.get("language", _language, "")
    city = fields.get("city", lambda v: text_field(v, "city", required=False), "")
    country = fields.get("country", parse_country, "")
    scopes = fields.get("scope", lambda v: _scopes(v, known), NONE)
    opted_in = fields.get("opted_in_at", _moment("opted_in_at", now), None) or now
    terms = _terms(fields)
    receipts = fields.get("receipts", _choice("receipts", RECEIPTS), "") or None  # None: left as it was
    if terms.expires_at and "opted_in_at" not in fields.problems and terms.expires_at <= opted_in:
        fields.problems["expires_at"] = "expires_at is not after opted_in_at"
    if fields.problems:
        raise RowError(fields.problems)
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
