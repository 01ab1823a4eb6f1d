"""Every word the dispatcher says to people, in one catalogue: gettext ``.po`` files read with
Babel, ``<language>/LC_MESSAGES/messages.po`` beside this module.

Three contexts (msgctxt): ``join``, the supporters' pages and the confirmation email; ``receipt``,
the receipts; ``fax``, the labels printed on fax letters. Message ids are stable keys
(``err_email``, ``confirm_title``), not the English words: fixing an English wording then leaves
every translation in place, and pages can name their texts (``<key>_title``). English is a
catalogue like the others, and the one every lookup falls back to.

The language policy, the same for pages, emails and letters: a BCP 47 tag is served by a shipped
catalogue of the same language written in the same script (``de-CH`` by de, ``zh`` and ``zh-CN``
by zh-Hans, ``zh-TW`` and ``zh-HK`` by zh-Hant), and only in a context that catalogue translates
whole. Otherwise by none: the caller tries the reader's next language, then English. So nobody
reads a mix of two languages, nor a script they did not choose: readers of Traditional
characters get English pages and emails until zh-Hant has their words, and their own fax labels.
"""

from __future__ import annotations

import functools
import gettext as _gettext
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources

from babel.messages.pofile import read_po

from dispatcher.language import parse_language, script_of

ENGLISH = "en"
# In the order the pages' language switch lists them.
SHIPPED = ("en", "fr", "es", "de", "zh-Hans", "zh-Hant")
JOIN, RECEIPT, FAX = "join", "receipt", "fax"

Text = str | tuple[str, ...]  # a message, or its plural forms


@dataclass(frozen=True)
class _Catalogue:
    messages: dict[tuple[str, str], Text]  # (context, key) → translated words
    plural: Callable[[int], int]  # n → the index of its plural form


@functools.cache
def _load(language: str) -> _Catalogue:
    path = resources.files(__package__) / language / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as f:
        catalog = read_po(f, locale=language.replace("-", "_"))
    messages: dict[tuple[str, str], Text] = {}
    for message in catalog:
        key = message.id[0] if isinstance(message.id, tuple | list) else message.id
        string = message.string
        words: Text = tuple(string) if isinstance(string, tuple | list) else string or ""
        # Untranslated (an empty form) or fuzzy: as gettext does, the English words instead.
        if key and not message.fuzzy and all(words):
            messages[message.context or "", key] = words
    return _Catalogue(messages, _gettext.c2py(catalog.plural_expr))


@functools.cache
def _keys(context: str) -> frozenset[str]:
    return frozenset(key for ctx, key in _load(ENGLISH).messages if ctx == context)


@functools.cache
def offered(context: str) -> tuple[str, ...]:
    """The shipped languages that translate every message of ``context``."""
    return tuple(
        lang for lang in SHIPPED if all((context, key) in _load(lang).messages for key in _keys(context))
    )


def language_for(tag: str, context: str) -> str | None:
    """The shipped language that serves ``tag`` in ``context``, if any (see the module's policy).

    A tag Babel cannot read (a region it has no data for, as in ``fr-DE``, or extensions) is
    read without its last subtags, as RFC 4647's lookup does; one it reads is taken as it is,
    so ``zh-TW`` never becomes ``zh``, which is written in another script."""
    subtags = tag.split("-")
    while subtags:
        try:
            wanted, script = parse_language("-".join(subtags)), script_of("-".join(subtags))
        except ValueError:
            subtags.pop()
            continue
        spoken = [wanted.language, script]
        return next((lang for lang, *written in _written(context) if written == spoken), None)
    return None


@functools.cache
def _written(context: str) -> tuple[tuple[str, str, str], ...]:
    """Each offered language with its language subtag and script: parsed once, not per request."""
    return tuple((lang, parse_language(lang).language, script_of(lang)) for lang in offered(context))


def _find(language: str, context: str, key: str) -> tuple[Text, _Catalogue]:
    for lang in (language, ENGLISH) if language in SHIPPED else (ENGLISH,):
        catalogue = _load(lang)
        if (found := catalogue.messages.get((context, key))) is not None:
            return found, catalogue
    raise KeyError(f"no text {key!r} in {context!r}")


def gettext(language: str, context: str, key: str) -> str:
    """The words in a shipped ``language``, else in English; KeyError for an unknown key."""
    found, _ = _find(language, context, key)
    if isinstance(found, tuple):
        raise KeyError(f"{key!r} in {context!r} has plural forms: ask ngettext")
    return found


def ngettext(language: str, context: str, key: str, n: int) -> str:
    """The plural form for ``n`` in a shipped ``language``, else in English."""
    found, catalogue = _find(language, context, key)
    if isinstance(found, str):
        return found
    return found[min(catalogue.plural(n), len(found) - 1)]


class Texts(Mapping[str, str]):
    """One language's messages of one context, for pages and code alike: ``t["key"]`` or, in
    templates, ``t.key``; ``t.plural(key, n)`` for a message with plural forms."""

    def __init__(self, language: str, context: str) -> None:
        # Underscored: t.language in a template must be the message, not this view's language.
        self._language, self._context = language, context

    def __getitem__(self, key: str) -> str:
        return gettext(self._language, self._context, key)

    def __getattr__(self, key: str) -> str:
        try:
            return self[key]
        except KeyError as exc:
            raise AttributeError(key) from exc

    def __iter__(self) -> Iterator[str]:
        english = _load(ENGLISH).messages
        return iter(sorted(k for k in _keys(self._context) if isinstance(english[self._context, k], str)))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def plural(self, key: str, n: int) -> str:
        return ngettext(self._language, self._context, key, n)


def texts(language: str, context: str) -> Texts:
    return Texts(language, context)
