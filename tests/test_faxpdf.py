"""Letters as fax PDFs: the text reads back, the CJK font is embedded, paper and margins fit."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from dispatcher.actions.files import load_actions
from dispatcher.actions.model import Target
from dispatcher.cli import main
from dispatcher.letters import faxpdf
from dispatcher.letters.render import SAMPLE_SIGNER, Letter
from tests.conftest import ROOT, cli_env

try:
    faxpdf.find_font()
    MISSING = "" if shutil.which("pdftotext") else "poppler-utils is not installed"
except faxpdf.FontMissing as exc:
    MISSING = str(exc)
# .ci/run installs both; elsewhere the tests say what to install instead of failing.
pytestmark = pytest.mark.skipif(bool(MISSING), reason=MISSING)

ACTIONS = load_actions(ROOT / "config" / "actions").actions
XI = ACTIONS["ua-61-21-update-1"].target("xi-jinping")  # China: A4
AMBASSADOR = ACTIONS["ua-61-21-update-1"].target("cong-peiwu")  # Canada: US Letter
TODAY = dt.date(2026, 11, 23)
MM = 72 / 25.4


def pdf_for(letter: Letter, target: Target = XI) -> bytes:
    head = faxpdf.letterhead(ACTIONS["ua-61-21-update-1"], target, SAMPLE_SIGNER, letter.language, TODAY)
    return faxpdf.letter_pdf(letter, head, faxpdf.find_font()).data


def text_of(data: bytes, tmp_path: Path) -> str:
    (tmp_path / "f.pdf").write_bytes(data)
    return subprocess.run(
        ["pdftotext", "-layout", str(tmp_path / "f.pdf"), "-"], capture_output=True, text=True, check=True
    ).stdout


def embedded_fonts(data: bytes, tmp_path: Path) -> list[list[str]]:
    (tmp_path / "f.pdf").write_bytes(data)
    out = subprocess.run(["pdffonts", str(tmp_path / "f.pdf")], capture_output=True, text=True, check=True)
    return [line.split() for line in out.stdout.splitlines()[2:]]


@pytest.mark.parametrize(
    ("language", "subject", "body"),
    [
        ("en", "Release the detained", "Dear President Xi,\nPlease release them.\nZoë, Zürich"),
        ("zh-Hans", "关于新疆被拘留者", "尊敬的习近平主席：\n请释放他们。\n林小文"),
        ("zh-Hant", "關於新疆被拘留者", "致國家主席習近平：\n請釋放他們。\n林小文"),
        ("en", "Mixed 混合 letter", "Dear President 习近平, please act. 谢谢 — Zoë"),
    ],
)
def test_text_reads_back_with_the_font_embedded(
    tmp_path: Path, language: str, subject: str, body: str
) -> None:
    data = pdf_for(Letter(subject, body, language))
    text = " ".join(text_of(data, tmp_path).split())
    for line in (subject, *body.splitlines()):
        assert " ".join(line.split()) in text
    assert "+86 10 6238 1025" in text
    fonts = embedded_fonts(data, tmp_path)
    assert fonts and all(row[-5] == "yes" for row in fonts), fonts  # emb column
    assert all("NotoSansCJK" in row[0] for row in fonts)


@pytest.mark.parametrize(
    ("language", "labels"),
    [
        ("zh-TW", ("傳真", "寄件人")),
        ("zh", ("传真", "发件人")),
        ("de-CH", ("An", "Datum")),
        ("pt", ("To", "Date")),
    ],
)
def test_the_labels_are_in_the_letters_language_and_script(
    tmp_path: Path, language: str, labels: tuple[str, ...]
) -> None:
    text = text_of(pdf_for(Letter("s", "b", language)), tmp_path)
    assert all(label in text for label in labels), text


def test_the_regional_face_follows_the_language(tmp_path: Path) -> None:
    simplified = embedded_fonts(pdf_for(Letter("s", "体", "zh-Hans")), tmp_path)[0][0]
    traditional = embedded_fonts(pdf_for(Letter("s", "體", "zh-Hant")), tmp_path)[0][0]
    assert simplified.endswith("NotoSansCJKSC") and traditional.endswith("NotoSansCJKTC")


def poppler(tool: str, data: bytes, tmp_path: Path, *args: str) -> str:
    (tmp_path / "f.pdf").write_bytes(data)
    command = [tool, *args, str(tmp_path / "f.pdf")] + (["-"] if tool == "pdftotext" else [])
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def test_paper_by_country_and_a_clear_top_strip_on_every_page(tmp_path: Path) -> None:
    long_body = "\n\n".join(["我们写信是为了关心新疆被任意拘留的人士。" * 20] * 12)
    data = pdf_for(Letter("长信", long_body, "zh-Hans"))
    info = poppler("pdfinfo", data, tmp_path)
    pages = int(re.search(r"Pages:\s+(\d+)", info).group(1))  # type: ignore[union-attr]
    assert pages >= 2 and "(A4)" in info  # China: A4
    assert "612 x 792 pts (letter)" in poppler(
        "pdfinfo", pdf_for(Letter("s", "Hi", "en"), AMBASSADOR), tmp_path
    )
    boxes = poppler("pdftotext", data, tmp_path, "-bbox")
    for page in re.findall(r"<page[^>]*>(.*?)</page>", boxes, re.S):
        tops = [float(y) for y in re.findall(r'yMin="([\d.]+)"', page)]
        assert tops and min(tops) >= 18 * MM, "text in the strip where the receiving fax prints its header"
    assert f"第 {pages} 页，共 {pages} 页" in text_of(data, tmp_path)


def test_preview_writes_the_fax_and_names_a_missing_font(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    out = tmp_path / "xi.pdf"
    args = [
        "preview",
        "ua-61-21-update-1",
        "--target",
        "xi-jinping",
        "--channel",
        "fax",
        "--output",
        str(out),
    ]
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0, result.output
    assert "习近平" in text_of(out.read_bytes(), tmp_path)
    missing = CliRunner().invoke(main, args, env={**env, "DISPATCHER_FAX_FONT": str(tmp_path / "none.ttc")})
    assert missing.exit_code == 1 and "apt-get install fonts-noto-cjk" in missing.output
