"""Letters as fax pages: a PDF with fpdf2, black on white, its OpenType CJK font embedded.

A fax machine prints what it is sent and nothing else, so the PDF carries its own font: Noto
Sans CJK from Debian's ``fonts-noto-cjk`` (Chinese, Japanese, Korean and Latin in one face; the
regional variant follows the letter's language, so Han characters take the forms a reader in
Beijing or Taipei expects). Instead of a cover page, a letterhead block on every first page says
who it is for, from whom and when; every page says which of how many it is. The top margin keeps
the strip where the receiving machine prints its own header clear of text.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import phonenumbers
from babel.dates import format_date
from fpdf import FPDF

from dispatcher.actions.model import Action, Target
from dispatcher.language import parse_language
from dispatcher.letters.render import Letter
from dispatcher.letters.texts import ENGLISH, FAX, language_for, texts
from dispatcher.models import Signer

FONT_DIRS = (Path("/usr/share/fonts/opentype/noto"), Path("/usr/share/fonts/opentype/noto-cjk"))
FONT_FILE = "NotoSansCJK-Regular.ttc"
# Faces in Noto Sans CJK's collection, by the regional forms of Han characters they draw.
FACES = {"ja": 0, "ko": 1, "zh-Hans": 2, "zh-Hant": 3, "zh-HK": 4}
LETTER_PAPER = {"US", "CA"}  # North America uses US Letter; everyone else A4
TOP_MARGIN_MM = 22  # the receiving machine prints its own header line in the top ~10 mm


class FontMissing(Exception):
    """The CJK font a fax needs is not installed."""


def find_font(configured: Path | None = None) -> Path:
    """``configured`` (DISPATCHER_FAX_FONT), else Debian's fonts-noto-cjk; a clear error if absent."""
    candidates = [configured] if configured else [d / FONT_FILE for d in FONT_DIRS]
    for path in candidates:
        if path.is_file():
            return path
    where = ", ".join(str(p) for p in candidates)
    raise FontMissing(
        f"fax letters need the font {FONT_FILE} (not found at {where}): "
        "install it with `apt-get install fonts-noto-cjk`, or set DISPATCHER_FAX_FONT to its path"
    )


def face_for(language: str) -> int:
    if language in FACES:
        return FACES[language]
    if language.startswith(("zh-TW", "zh-MO")):
        return FACES["zh-Hant"]
    return FACES.get(language.split("-")[0], FACES["zh-Hans"])


@dataclass(frozen=True)
class Letterhead:
    to_name: str
    to_fax: str  # in international format
    sender: str  # the supporter, signing
    date: str  # formatted for the letter's language
    reference: str
    paper: str  # "A4" or "Letter"


def letterhead(action: Action, target: Target, signer: Signer, language: str, today: dt.date) -> Letterhead:
    assert target.fax is not None
    number = phonenumbers.format_number(
        phonenumbers.parse(target.fax), phonenumbers.PhoneNumberFormat.INTERNATIONAL
    )
    title = f"{target.name}, {target.title}" if target.title else target.name
    sender = ", ".join(part for part in (signer.name, signer.city) if part)
    day = format_date(today, format="long", locale=parse_language(language))
    paper = "Letter" if target.country in LETTER_PAPER else "A4"
    return Letterhead(title, number, sender, day, action.reference, paper)


class _Pages(FPDF):
    def __init__(self, head: Letterhead, language: str) -> None:
        super().__init__(format=head.paper, unit="mm")
        # In the letter's language and script (zh-TW: Traditional), else English.
        self.labels = texts(language_for(language, FAX) or ENGLISH, FAX)
        self.set_margins(20, TOP_MARGIN_MM, 20)
        self.set_auto_page_break(True, margin=18)
        self.set_text_color(0, 0, 0)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(size=9)
        text = self.labels["page"].format(page=self.page_no(), pages="{nb}")
        self.cell(0, 5, text, align="R")


@dataclass(frozen=True)
class FaxDocument:
    data: bytes
    pages: int


def letter_pdf(letter: Letter, head: Letterhead, font: Path) -> FaxDocument:
    """The letter as fax pages: letterhead, subject, body; the font embedded (subset)."""
    pdf = pages(head, letter.language, font)
    draw(pdf, letter, head)
    return FaxDocument(bytes(pdf.output()), pdf.page_no())


def pages(head: Letterhead, language: str, font: Path) -> FPDF:
    """An empty fax document on the target's paper, the font for ``language`` set."""
    pdf = _Pages(head, language)
    pdf.add_font("letter", fname=font, collection_font_number=face_for(language))
    pdf.set_font("letter", size=11)
    return pdf


def draw(pdf: FPDF, letter: Letter, head: Letterhead) -> None:
    """The letter from a new page on: letterhead, subject, body (a digest fax draws several)."""
    assert isinstance(pdf, _Pages)
    pdf.set_font(size=11)
    pdf.add_page()
    lines = (("to", head.to_name), ("fax", head.to_fax), ("from", head.sender), ("date", head.date))
    for label, value in lines:
        pdf.cell(28, 6, pdf.labels[label])
        pdf.cell(0, 6, value, new_x="LMARGIN", new_y="NEXT")
    if head.reference:
        pdf.cell(28, 6, pdf.labels["reference"])
        pdf.multi_cell(0, 6, head.reference, new_x="LMARGIN", new_y="NEXT")
    pdf.line(20, pdf.get_y() + 2, pdf.w - 20, pdf.get_y() + 2)
    pdf.ln(8)
    pdf.set_font(size=12)
    pdf.multi_cell(0, 7, letter.subject, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font(size=11)
    pdf.multi_cell(0, 6, letter.body, new_x="LMARGIN", new_y="NEXT")
