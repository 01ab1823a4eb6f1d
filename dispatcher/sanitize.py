"""Stored text made safe to show: in a terminal, in a spreadsheet, in JSON read in a terminal.

Text in the store is not all ours: an SMTP server's reply is kept verbatim as the attempt's
detail, so it may carry escape sequences (which a terminal obeys), bidirectional overrides
(which reorder what is shown) or a leading ``=`` (which a spreadsheet evaluates as a formula).
Everything the CLI prints from the store goes through one of these functions, and every CSV
the product writes goes through ``csv_writer``.

Unsafe characters are escaped visibly (``\\x1b``, ``\\u202e``) rather than dropped: an operator
reading a strange reply should see that it was strange, and what it held.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable
from typing import Protocol

# C0 and C1 controls, DEL, the bidirectional embeddings, overrides, isolates and marks, the
# Unicode line and paragraph separators, and lone surrogates (an undecodable reply byte, which
# aiosmtplib keeps as one and which a UTF-8 terminal cannot even be sent).
_BIDI_AND_LINES = "\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_TERMINAL_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI_AND_LINES}\ud800-\udfff]")
# A line break or tab inside a quoted CSV cell is data a spreadsheet shows as such.
_CSV_UNSAFE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI_AND_LINES}\ud800-\udfff]")
# json.dumps escapes C0 itself; with ensure_ascii=False it passes the rest through raw.
_JSON_UNESCAPED = re.compile(f"[\x7f-\x9f{_BIDI_AND_LINES}\ud800-\udfff]")

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

# What makes a spreadsheet (Excel, LibreOffice, Google Sheets) evaluate a cell (OWASP, "CSV
# Injection"). Tab and CR count on their own; the others also after leading white space, because
# some importers trim it before they look.
_FORMULA_FIRST = ("=", "+", "-", "@")
_FORMULA_LEADING = ("\t", "\r")
# Where a spreadsheet may start a new cell inside ours: a German, French or Spanish Excel splits
# a CSV on ';', a paste or a TSV import on tab, and one that ignores quotes starts a row at a line
# break. Each piece after one of these is checked as if it were a cell of its own.
_PIECE = re.compile(r"(?<=[;\t\n])(?=[^\S\t\n]*[=+\-@])")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_text(text: str) -> str:
    """``text`` as one line a terminal shows literally: every control character escaped."""
    return _TERMINAL_UNSAFE.sub(_escape, text)


def json_text(value: object) -> str:
    """``json.dumps`` readable in a terminal: non-ASCII text stays as is, controls are escaped.

    Lossless: the characters escaped here can only occur inside JSON strings, and a parser turns
    ``\\u202e`` back into the same character.
    """
    return _JSON_UNESCAPED.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(value, ensure_ascii=False))


def spreadsheet_cell(value: object) -> object:
    """A CSV cell no spreadsheet evaluates; numbers (which we write) stay numbers.

    Text starting like a formula gets a leading ``'``, which spreadsheets show as text; so does
    each piece after a ``;``, tab or line break that starts like one (``x;'=1+1``).
    """
    if value is None or isinstance(value, int | float):
        return value
    text = str(value)
    formula = text.startswith(_FORMULA_LEADING) or text.lstrip().startswith(_FORMULA_FIRST)
    text = _PIECE.sub("'", _CSV_UNSAFE.sub(_escape, text))  # an escape never makes a formula
    return "'" + text if formula else text


class _Stream(Protocol):
    def write(self, text: str, /) -> object: ...


class SafeCsvWriter:
    """``csv.writer`` whose every cell passes through ``spreadsheet_cell``, text always quoted:
    a reader that splits on ';' or tab then sees a quote, not a formula, at the cell's start."""

    def __init__(self, stream: _Stream) -> None:
        self._writer = csv.writer(stream, quoting=csv.QUOTE_NONNUMERIC)
        self._plain = csv.writer(stream)

    def writeheader(self, names: Iterable[str]) -> None:
        """The column names, ours and plain words: unquoted, as readers matching a header expect."""
        self._plain.writerow(names)

    def writerow(self, row: Iterable[object]) -> None:
        self._writer.writerow([spreadsheet_cell(cell) for cell in row])

    def writerows(self, rows: Iterable[Iterable[object]]) -> None:
        for row in rows:
            self.writerow(row)


def csv_writer(stream: _Stream) -> SafeCsvWriter:
    """The writer for every CSV the dispatcher produces (send log, reports, rejected rows)."""
    return SafeCsvWriter(stream)
