"""Several model letters per language, and which one a supporter gets.

``templates/<set>/<language>.j2`` is variant ``a``; ``<language>.b.j2``, ``<language>.c.j2`` …
are further ones. Officials' filters quarantine floods of identical messages: variants let a
campaign send several texts, each supporter always the same one.

A supporter's variant is chosen by rendezvous hashing of their email address (the store's key
for a supporter, unique and never changed while they send), the action's id and each variant's
name: stable across retries, copies, workers, restarts and a move to another database, the same
for all of an action's targets, even over the variants, and adding a variant moves only the
supporters who get the new one.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

FIRST = "a"  # the variant of ``<language>.j2``
# One lowercase letter after the language: ``en.b.j2``. Language tags have no dots.
_NAME = re.compile(r"(?P<language>[A-Za-z0-9_-]+)(?:\.(?P<variant>[b-z]))?\.j2")


def parse(file_name: str) -> tuple[str, str] | None:
    """(language, variant) of a template file's name, or None if it names no variant."""
    found = _NAME.fullmatch(file_name)
    if found is None:
        return None
    return found["language"], found["variant"] or FIRST


def file_name(language: str, variant: str) -> str:
    return f"{language}.j2" if variant == FIRST else f"{language}.{variant}.j2"


def scan(folder: Path) -> dict[str, list[str]]:
    """Each language with a ``<language>.j2`` → its variants in order (``a`` first)."""
    found: dict[str, set[str]] = {}
    for path in folder.glob("*.j2") if folder.is_dir() else ():
        named = parse(path.name)
        if named is not None:
            found.setdefault(named[0], set()).add(named[1])
    return {lang: sorted(names) for lang, names in found.items() if FIRST in names}


def unused(folder: Path) -> list[str]:
    """Template files of the folder that no letter uses: a name that is no variant (``en.formal.j2``),
    or a variant of a language without its ``<language>.j2``."""
    languages = scan(folder)
    names = sorted(p.name for p in folder.glob("*.j2")) if folder.is_dir() else []
    return [n for n in names if (named := parse(n)) is None or named[0] not in languages]


def variants(templates_dir: Path, template_set: str, language: str) -> list[str]:
    """The variants of a template set's letter in ``language``, ``a`` first; [] if it has none."""
    return scan(templates_dir / template_set).get(language, [])


def _weight(action_id: str, supporter: str, variant: str) -> bytes:
    key = "\x1f".join((action_id, supporter, variant)).encode()
    return hashlib.blake2b(key, digest_size=8).digest()


def choose(names: list[str], action_id: str, supporter_email: str) -> str:
    """The variant of ``names`` this supporter's letters for this action use."""
    if len(names) <= 1:
        return names[0] if names else FIRST
    supporter = supporter_email.strip().lower()
    return max(names, key=lambda name: _weight(action_id, supporter, name))
