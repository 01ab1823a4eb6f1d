"""Stored text made safe for a spreadsheet, a terminal and JSON printed to a terminal."""

from __future__ import annotations

import csv
import io
import json

import pytest

from dispatcher.sanitize import csv_writer, json_text, spreadsheet_cell, terminal_text

# What a hostile or broken SMTP server may put in its reply, and so in the attempt log.
ESC = "\x1b[31mred\x1b[0m"
CSI_8BIT = "\x9b31mred"
BIDI = "invoice\u202egnp.exe"
UNSAFE_FOR_TERMINALS = [
    "\x1b",
    "\x9b",
    "\x07",
    "\x7f",
    "\r",
    "\u202a",
    "\u202e",
    "\u2066",
    "\u2069",
    "\u2028",
]


@pytest.mark.parametrize(
    "value",
    [
        '=HYPERLINK("http://x","y")',
        "+1-2",
        "-2+3",
        "@SUM(A1)",
        "\t=1+1",
        "\r=1+1",
        "\tplain",
        "  =1+1",
        "\n=1+1",
        "\u00a0=1+1",
    ],
)
def test_a_cell_a_spreadsheet_would_evaluate_is_quoted(value: str) -> None:
    cell = spreadsheet_cell(value)
    assert isinstance(cell, str) and cell.startswith("'")


@pytest.mark.parametrize(
    "value", ["", "250 OK queued as 4F2", "a=b", "O'Brien", "e-mail", "尊敬的主席", "1+1", "x@example.org"]
)
def test_an_ordinary_cell_is_left_alone(value: str) -> None:
    assert spreadsheet_cell(value) == value


@pytest.mark.parametrize("value", [-1, 0, 451, -2.5, None, True])
def test_numbers_we_write_stay_numbers(value: object) -> None:
    assert spreadsheet_cell(value) is value


def test_other_objects_are_cells_as_text() -> None:
    class Formula:
        def __str__(self) -> str:
            return "=1+1"

    assert spreadsheet_cell(Formula()) == "'=1+1"


def test_csv_cells_carry_no_terminal_controls_but_keep_line_breaks() -> None:
    assert spreadsheet_cell(ESC) == "\\x1b[31mred\\x1b[0m"
    assert spreadsheet_cell("line 1\nline 2\tend") == "line 1\nline 2\tend"
    assert spreadsheet_cell("a\rb") == "a\\rb"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("x;=1+1;", "x;'=1+1;"),
        ("a\t-2+3", "a\t'-2+3"),
        ("line 1\n@SUM(A1)", "line 1\n'@SUM(A1)"),
        ("x; =1+1", "x;' =1+1"),
        ("a;b;c-d", "a;b;c-d"),
    ],
)
def test_a_piece_a_spreadsheet_would_split_off_is_neutralised_too(value: str, shown: str) -> None:
    assert spreadsheet_cell(value) == shown


def test_every_text_cell_is_quoted_so_splitting_on_semicolons_finds_no_formula() -> None:
    out = io.StringIO()
    writer = csv_writer(out)
    writer.writeheader(["detail", "code", "note"])  # our own names: as they are
    writer.writerows([["x;=1+1;", 5, None], ["plain", -5, "a\t@x"]])
    assert out.getvalue() == 'detail,code,note\r\n"x;\'=1+1;",5,""\r\n"plain",-5,"a\t\'@x"\r\n'


def test_csv_writer_round_trips_through_a_csv_reader() -> None:
    out = io.StringIO()
    writer = csv_writer(out)
    writer.writerow(["detail", "code"])
    writer.writerows([['=HYPERLINK("http://x","y")', -5], ["multi\nline, with comma", 250]])
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows == [
        ["detail", "code"],
        ['\'=HYPERLINK("http://x","y")', "-5"],
        ["multi\nline, with comma", "250"],
    ]


@pytest.mark.parametrize("char", UNSAFE_FOR_TERMINALS)
def test_terminal_text_escapes_controls_visibly(char: str) -> None:
    shown = terminal_text(f"a{char}b")
    assert char not in shown and shown.startswith("a\\") and shown.endswith("b") and shown.isprintable()


def test_terminal_text_examples() -> None:
    assert terminal_text(ESC) == "\\x1b[31mred\\x1b[0m"
    assert terminal_text(CSI_8BIT) == "\\x9b31mred"
    assert terminal_text(BIDI) == "invoice\\u202egnp.exe"
    assert terminal_text("line 1\nline 2") == "line 1\\nline 2"
    assert terminal_text("bad byte \udcff") == "bad byte \\udcff"  # surrogateescape'd reply byte


@pytest.mark.parametrize("text", ["250 2.0.0 Ok: queued", "致國家主席習近平", "Zoë Ñandú", "مرحبا", "✉️ ok"])
def test_terminal_text_leaves_printable_text_alone(text: str) -> None:
    assert terminal_text(text) == text


@pytest.mark.parametrize("text", [ESC, CSI_8BIT, BIDI, "a\u2028b", "\x7f", "致國家 ok", "bad \udcff"])
def test_json_text_is_lossless_and_carries_no_raw_controls(text: str) -> None:
    encoded = json_text({"detail": text})
    assert json.loads(encoded) == {"detail": text}
    assert encoded.isprintable()
    assert ("致國家" in encoded) == ("致國家" in text)  # readable Unicode stays readable
