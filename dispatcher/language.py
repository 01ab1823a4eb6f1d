"""Languages: BCP 47 tags read through Babel, and the script a language is written in."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from babel import Locale, UnknownLocaleError
from pydantic import AfterValidator


def parse_language(tag: str) -> Locale:
    """A BCP 47 tag (``zh-Hans``, ``en``, ``de-CH``) as a Babel locale."""
    try:
        return Locale.parse(tag.replace("-", "_"))
    except (ValueError, UnknownLocaleError) as exc:
        raise ValueError(f"{tag!r} is not a known BCP 47 language tag") from exc


def _language(tag: str) -> str:
    parse_language(tag)
    usual = bcp47_case(tag.replace("_", "-"))
    if tag != usual:
        # Consents store tags so; "zh-hans" or "en_GB" here would match none of them.
        raise ValueError(f"write {tag!r} as {usual!r}")
    return tag


def bcp47_case(tag: str) -> str:
    """A tag in its conventional case (zh-Hans, en-GB): the planner matches a consent's
    languages to a letter's as text, so every tag stored or configured is written so."""
    first, *rest = tag.split("-")
    parts = [first.lower()]
    for part in rest:
        alpha = part.isalpha()
        parts.append(
            part.title()
            if alpha and len(part) == 4
            else part.upper()
            if alpha and len(part) == 2
            else part.lower()
        )
    return "-".join(parts)


def script_of(tag: str) -> str:
    """The ISO 15924 script a language is written in (``Hans``, ``Hant``, ``Latn``…)."""
    from babel.core import get_global

    locale = parse_language(tag)
    if locale.script:
        return locale.script
    likely: Mapping[str, str] = get_global("likely_subtags")
    full = likely.get(str(locale)) or likely.get(locale.language) or ""
    parts = full.split("_")
    return parts[1] if len(parts) > 2 else "Latn"


Language = Annotated[str, AfterValidator(_language)]
