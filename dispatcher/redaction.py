"""Cutting a supporter out of the server replies kept for their letters.

A mail server may quote what it was sent: the Reply-To address, or the From's display name as
it went out on the wire, which is not always the name as stored (runs of white space become one
space, a non-ASCII name becomes RFC 2047 encoded words, a name with punctuation a quoted
string). ``wire_forms`` lists every one of those forms, from the message builder's own
functions, so that forget, retention and the dashboard's viewers all cut out the same texts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from dispatcher.mime import clean, mailbox_phrase

REDACTED = "[supporter]"
_SHORTEST = 2  # a one-letter "name" would eat into every reply


def wire_forms(name: str) -> set[str]:
    """The display name as given, white space collapsed, and as the message builder writes it
    in From and Reply-To: atoms, a quoted string (whole, and its escaped inside), or encoded
    words, each on its own too (a header may be folded between any two of them)."""
    collapsed = clean(name)
    tokens = mailbox_phrase(name)
    phrase = " ".join(tokens)
    forms = {name, collapsed, phrase}
    if phrase.startswith('"'):
        forms.add(phrase[1:-1])
    forms.update(t for t in tokens if t.startswith("=?"))
    return {f for f in forms if len(f.strip()) >= _SHORTEST}


def person_terms(email: str, name: str, city: str) -> set[str]:
    """What names a supporter in a reply: their address, its local part, every wire form of
    their name, their city."""
    texts = {email, email.partition("@")[0], city, *wire_forms(name)}
    return {t for t in texts if len(t.strip()) >= _SHORTEST}


def pattern(terms: Iterable[str]) -> re.Pattern[str] | None:
    """The terms as whole words (never inside a longer word: a two-letter name must not eat
    into "Line busy"), longest first, so an email goes before the name inside it."""
    ordered = sorted(set(terms), key=len, reverse=True)
    if not ordered:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, ordered)) + r")(?!\w)", re.IGNORECASE)


def person_pattern(email: str, name: str, city: str) -> re.Pattern[str] | None:
    return pattern(person_terms(email, name, city))


def redacted(text: str, found: re.Pattern[str] | None) -> str:
    return found.sub(REDACTED, text) if text and found is not None else text
