"""A target's daily digest as text: a subject and an opening in the target's letter language
saying how many supporters wrote, then their letters, each under a heading. The letters are
rendered as single letters are (templates, variants); a digest names each supporter by name and
city only, as their letter signs itself, never by email address."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dispatcher.letters import texts
from dispatcher.letters.render import Letter
from dispatcher.models import Signer

CONTEXT = "digest"


@dataclass(frozen=True)
class DigestText:
    subject: str
    intro: str
    letters: tuple[tuple[str, Letter], ...]  # (heading, letter)
    language: str  # of the subject and opening (the letters keep their own)


def language_of(tag: str) -> str:
    """The shipped catalogue that writes the target's letter language whole, else English."""
    return texts.language_for(tag, CONTEXT) or texts.ENGLISH


def signed(signer: Signer) -> str:
    """ "Ana Lopez, Lyon": the name, and the city where the supporter let it show."""
    return ", ".join(part for part in (signer.name, signer.city) if part)


def compose(title: str, language: str, letters: Sequence[tuple[Letter, Signer]]) -> DigestText:
    """The digest of ``letters`` about the action ``title``, introduced in ``language``; each
    letter headed with its signer's name and city (what a letter with the city shows anyway)."""
    lang, n = language_of(language), len(letters)
    subject = texts.ngettext(lang, CONTEXT, "subject", n).format(n=n, title=title)
    intro = texts.ngettext(lang, CONTEXT, "intro", n).format(n=n, title=title)
    heading = texts.gettext(lang, CONTEXT, "letter")
    parts = tuple(
        (f"{heading.format(i=i, n=n)}: {signed(signer)}", letter)
        for i, (letter, signer) in enumerate(letters, 1)
    )
    return DigestText(subject, intro, parts, lang)
