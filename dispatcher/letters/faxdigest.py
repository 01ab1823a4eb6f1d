"""A digest by fax: the letters split into faxes of at most ``most`` pages, each opening with a
cover page that says how many supporters wrote and which of the letters this fax carries. A
letter is never split between two faxes: one longer than a fax allows goes alone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fpdf import FPDF

from dispatcher.letters import texts
from dispatcher.letters.digest import CONTEXT, DigestText
from dispatcher.letters.faxpdf import FaxDocument, Letterhead, draw, pages
from dispatcher.letters.render import Letter


@dataclass(frozen=True)
class FaxPart:
    letters: range  # which of the digest's letters (indexes)
    document: FaxDocument


def split(counts: Sequence[int], most: int) -> list[range]:
    """Letters in order, as many in each fax as fit in ``most`` pages after its cover page."""
    out: list[range] = []
    start, used = 0, 0
    for i, count in enumerate(counts):
        if i > start and used + count > most - 1:
            out.append(range(start, i))
            start, used = i, 0
        used += count
    if start < len(counts):
        out.append(range(start, len(counts)))
    return out


def page_counts(letters: Sequence[tuple[Letter, Letterhead]], font: Path) -> list[int]:
    """Each letter's pages, laid out once in one document."""
    pdf = pages(letters[0][1], letters[0][0].language, font)
    counts = []
    for letter, head in letters:
        before = pdf.page_no()
        draw(pdf, letter, head)
        counts.append(pdf.page_no() - before)
    pdf.output()  # written only to release the font file it holds open
    return counts


def _cover(pdf: FPDF, text: DigestText, part: int, parts: int, shown: range) -> None:
    pdf.add_page()
    pdf.set_font(size=14)
    pdf.multi_cell(0, 8, text.subject, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font(size=11)
    pdf.multi_cell(0, 6, text.intro, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    n, label = len(text.letters), texts.gettext(text.language, CONTEXT, "fax_part")
    line = label.format(part=part, parts=parts, first=shown.start + 1, last=shown.stop, n=n)
    pdf.multi_cell(0, 6, line, new_x="LMARGIN", new_y="NEXT")


def faxes(
    text: DigestText, heads: Sequence[Letterhead], cover: Letterhead, font: Path, most: int
) -> list[FaxPart]:
    """The digest's faxes: each a cover page, then its letters, at most ``most`` pages."""
    letters = [(letter, head) for (_, letter), head in zip(text.letters, heads, strict=True)]
    groups = split(page_counts(letters, font), most)
    out = []
    for part, group in enumerate(groups, 1):
        pdf = pages(cover, letters[0][0].language, font)
        _cover(pdf, text, part, len(groups), group)
        for i in group:
            draw(pdf, *letters[i])
        out.append(FaxPart(group, FaxDocument(bytes(pdf.output()), pdf.page_no())))
    return out
