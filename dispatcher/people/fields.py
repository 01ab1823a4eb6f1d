"""A supporter's fields, one parser each: the values allowed, the default, the normal form, and
the problem, naming the field, when a value is refused.

The CSV import, the opt-in form and the CRM API all parse with these, so that the three accept
and refuse the same values and store the same normal form. What differs by medium stays in each
adapter: a CSV cell holds ``a;b`` where the form has checkboxes and the API a JSON list; the
form offers only what is open (its actions, tags, letter languages and channels), a smaller
monthly cap and digits from any keyboard, and words its refusals in the page's language (from
``FieldError.kind``).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from babel import Locale

from dispatcher import capabilities
from dispatcher.actions.model import Action
from dispatcher.addresses import normalise_email
from dispatcher.language import bcp47_case, parse_language
from dispatcher.models import CITY_LIMIT, NAME_LIMIT, WORDS_LIMIT

# The channels a consent may name, in the one order a consent's channels are kept in.
CHANNELS = tuple(capabilities.KINDS)
NAME_DISPLAYS = ("full", "name")  # the first is the default
REPLIES = ("organisation", "direct")  # the first is the default
RECEIPTS = ("off", "weekly", "monthly")
MONTHLY_CAP = range(1, 1001)
# Longest value of each field, checked before anything else so that no problem quotes a huge
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


class FieldError(ValueError):
    """A refused value. ``str()`` names the field and the problem (what CSV rows and the API
    report); ``kind`` is what a form turns into its own words: ``empty``, ``long``,
    ``characters`` (control or invisible ones), or ``invalid``."""

    def __init__(self, field: str, kind: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.kind = kind


@dataclass(frozen=True)
class KnownScopes:
    """What a consent's scope may name: the actions' ids and their campaign tags."""

    actions: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()

    @classmethod
    def of(cls, actions: Iterable[Action]) -> KnownScopes:
        listed = list(actions)
        return cls(frozenset(a.id for a in listed), frozenset(t for a in listed for t in a.tags))


def bounded(value: str, field: str) -> str:
    """``value`` stripped, or ``FieldError`` when longer than the field's limit."""
    value = value.strip()
    if len(value) > LIMITS[field]:
        raise FieldError(field, "long", f"{field} is longer than {LIMITS[field]:,} characters")
    return value


def distinct(items: Iterable[str]) -> tuple[str, ...]:
    """A list's items stripped, blanks dropped, each once, in its first place."""
    return tuple(dict.fromkeys(item.strip() for item in items if item.strip()))


def text(value: str, field: str, required: bool) -> str:
    """One line people read (a name, a city, a consent text's version): no control characters,
    no text-direction controls; empty, or only invisible characters, is refused if required."""
    value = bounded(value, field)
    if all(c in _BLANK_LETTERS or unicodedata.category(c) in _BLANK_CATEGORIES for c in value):
        if required and value:
            raise FieldError(field, "characters", f"{field} is empty (only invisible characters)")
        if required:
            raise FieldError(field, "empty", f"{field} is empty")
        return ""
    if found := _CONTROL.search(value):
        problem = f"{field} contains a control character (U+{ord(found[0]):04X}, such as a line break)"
        raise FieldError(field, "characters", problem)
    if found := _BIDI.search(value):
        problem = (
            f"{field} contains an invisible text-direction control character (U+{ord(found[0]):04X}) "
            "that changes how the text is shown"
        )
        raise FieldError(field, "characters", problem)
    return value


def email(value: str) -> str:
    value = bounded(value, "email")
    if not value:
        raise FieldError("email", "empty", "email is empty")
    try:
        # Mailbox local parts are case-sensitive in theory only; CRM exports differ in case, not people.
        return normalise_email(value).lower()
    except ValueError as exc:
        raise FieldError("email", "invalid", f"email: {exc}") from exc


def language(value: str, field: str = "language") -> str:
    """A BCP 47 tag in its conventional case; en_GB, which Babel reads too, as en-GB."""
    value = value.strip()
    if not value:
        raise FieldError(field, "empty", f"{field} is empty")
    try:
        parse_language(value)
    except ValueError as exc:
        raise FieldError(field, "invalid", f"{field}: {exc}") from exc
    return bcp47_case(value.replace("_", "-"))


def country(value: str) -> str:
    """An ISO 3166 alpha-2 code in capitals; empty when not given."""
    code = bounded(value, "country").upper()
    if code and code not in TERRITORIES:
        raise FieldError("country", "invalid", f"country {code!r} is not an ISO 3166 country code")
    return code


def scopes(items: Iterable[str], known: KnownScopes) -> tuple[str, ...]:
    """``all``, ``tag:<tag>`` (an action's campaign tag) or action ids, each once."""
    given = distinct(items)
    if not given:
        raise FieldError("scope", "empty", "scope is empty: give all, tag:<tag> or action ids")
    tags = [s.removeprefix("tag:") for s in given if s.startswith("tag:")]
    ids = [s for s in given if s != "all" and not s.startswith("tag:")]
    wrong = []
    if unknown := [i for i in ids if i not in known.actions]:
        wrong.append(f"unknown action id(s) {', '.join(unknown)}")
    if untagged := [t for t in tags if t not in known.tags]:
        wrong.append(f"no action has the tag(s) {', '.join(untagged)}")
    if wrong:
        raise FieldError("scope", "invalid", "scope: " + ", and ".join(wrong))
    return given


def channels(items: Iterable[str]) -> tuple[str, ...]:
    """``email``, ``fax`` or both, in any case, at least one."""
    given = {c.lower() for c in distinct(items)}
    if not given:
        raise FieldError("channels", "empty", "channels is empty: give email, fax or both")
    if unknown := sorted(given - set(CHANNELS)):
        problem = f"channels: unknown channel(s) {', '.join(unknown)} (the channels are email and fax)"
        raise FieldError("channels", "invalid", problem)
    # One order, so that the same channels listed the other way round are not a changed consent.
    return tuple(c for c in CHANNELS if c in given)


def languages(items: Iterable[str]) -> tuple[str, ...]:
    """The letters' languages a supporter signs; none: any."""
    tags = {language(tag, "languages") for tag in distinct(items)}
    return tuple(sorted(tags))  # a set: the order they were listed in means nothing


def choice(field: str, allowed: tuple[str, ...]) -> Callable[[str], str]:
    """One of ``allowed``, in any case; empty when not given (the caller's default applies)."""

    def parse(value: str) -> str:
        value = bounded(value, field)
        if value and value.lower() not in allowed:
            raise FieldError(field, "invalid", f"{field} {value!r} is not one of {', '.join(allowed)}")
        return value.lower()

    return parse


def monthly_cap(value: str, maximum: int = MONTHLY_CAP[-1]) -> int | None:
    """Letters a month, a whole number from 1 to ``maximum``; None when not given."""
    value = bounded(value, "monthly_cap")
    if not value:
        return None
    # int() would also take "+5", " 5" and "1_000": only plain digits are a count of letters.
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= maximum:
        problem = f"monthly_cap {value!r} is not a whole number from 1 to {maximum}"
        raise FieldError("monthly_cap", "invalid", problem)
    return int(value)


def moment(field: str, now: dt.datetime | None) -> Callable[[str], dt.datetime | None]:
    """A date and time with its UTC offset, as UTC; with ``now``, it is required and may not be
    in the future."""

    def parse(value: str) -> dt.datetime | None:
        value = bounded(value, field)
        if not value:
            if now is None:
                return None
            raise FieldError(field, "empty", f"{field} is empty")
        try:
            at = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            problem = f"{field} {value!r} is not an ISO 8601 date and time"
            raise FieldError(field, "invalid", problem) from exc
        if at.tzinfo is None:
            problem = f"{field} needs a UTC offset (e.g. 2025-03-14T20:15:00+08:00)"
            raise FieldError(field, "invalid", problem)
        if now is not None and at > now:
            raise FieldError(field, "invalid", f"{field} is in the future")
        return at.astimezone(dt.UTC)

    return parse


_MARKUP = re.compile(r"<[^>]*>|&[#\w]+;|\{[{%#]|[}%#]\}")
_LINE_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def words(value: str) -> str:
    """A supporter's own paragraph as plain text: markup (HTML tags and entities, template
    delimiters), control and text-direction characters removed, spaces and blank lines tidied;
    refused when longer than ``WORDS_LIMIT`` once cleaned."""
    cleaned = _MARKUP.sub("", value.replace("\r\n", "\n"))
    cleaned = _BIDI.sub("", _LINE_CONTROL.sub(" ", cleaned))
    lines = [" ".join(line.split()) for line in cleaned.split("\n")]
    cleaned = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    if len(cleaned) > WORDS_LIMIT:
        raise FieldError("words", "long", f"your own words are longer than {WORDS_LIMIT} characters")
    return cleaned
