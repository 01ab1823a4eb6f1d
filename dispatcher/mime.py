"""Header text as it goes out on the wire: one clean line, folded, RFC 2047 encoded words.

Below the email channel, which writes its headers with these, and the store's redaction of
server replies, which must find a supporter's name in every form these write it.
"""

from __future__ import annotations

import base64
import re

# C0, DEL, C1, the Unicode line/paragraph separators, and the bidirectional controls (which
# would make a From: read backwards): none may reach a header.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u0085\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_ATOMS = re.compile(r"^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]*$")
# 42 bytes of UTF-8 -> 56 base64 characters: a 68-character encoded word (RFC 2047 allows 75),
# which still fits on a 78-character line after the longest header name we write, "Reply-To: ".
_WORD_BYTES = 42
_LINE = 78  # RFC 5322: lines SHOULD be at most 78 characters and MUST be at most 998
# Folding happens only between words, so a longer ASCII word could not share a 998-octet line
# with a header name and an address: such a text goes out as encoded words, which are short.
_LONGEST_WORD = 900


def clean(text: str) -> str:
    """One line of text: control characters become spaces, runs of white space one space."""
    return " ".join(_CONTROL.sub(" ", text).split())


def _encoded_words(text: str) -> list[str]:
    """RFC 2047 base64 words, each cut at a character boundary (a word may not split one)."""
    data = text.encode()
    words: list[str] = []
    start = 0
    while start < len(data):
        end = min(start + _WORD_BYTES, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # a UTF-8 continuation byte
            end -= 1
        words.append(f"=?utf-8?b?{base64.b64encode(data[start:end]).decode()}?=")
        start = end
    return words


def _fold(name: str, tokens: list[str]) -> str:
    """``name: tokens``, folded between tokens (never inside one) so that lines stay within 78
    characters where the tokens allow; a fold replaces the space that separated two tokens."""
    lines: list[str] = []
    line = f"{name}:"
    for index, token in enumerate(tokens):
        if index and len(line) + 1 + len(token) > _LINE:
            lines.append(line)
            line = ""
        line = f"{line} {token}"
    lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def _plain(tokens: list[str]) -> bool:
    return max(map(len, tokens)) <= _LONGEST_WORD


def unstructured(name: str, value: str) -> str:
    """A header line such as Subject, encoded and folded."""
    value = clean(value)
    words = value.split(" ")
    if value.isascii() and "=?" not in value and _plain(words):
        return _fold(name, words)
    return _fold(name, _encoded_words(value))


def mailbox_phrase(display_name: str) -> list[str]:
    """A display name as words to fold between: atoms, a quoted string, or encoded words."""
    name = clean(display_name)
    if not name:
        return []
    if name.isascii() and "=?" not in name:
        if _ATOMS.match(name):
            words = name.split(" ")
        else:  # folding inside a quoted string is allowed, at its spaces
            words = ('"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"').split(" ")
        if _plain(words):
            return words
    return _encoded_words(name)


def mailbox_header(name: str, entries: list[tuple[str, str]]) -> str:
    tokens: list[str] = []
    for display, address in entries:
        if tokens:
            tokens[-1] += ","
        tokens += [*mailbox_phrase(display), f"<{address}>"]
    return _fold(name, tokens)
