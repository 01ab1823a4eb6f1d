"""The README's Layout section against the tree: it names every module, and nothing that is gone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "dispatcher"
# Alembic's own files (env.py, the revisions): the Layout names their folder, not each file.
MIGRATIONS = PACKAGE / "store" / "migrations"


def layout_entries() -> dict[str, str]:
    """Each entry of the Layout block: its path (``dispatcher/x.py`` or ``dispatcher/p/``) → its
    text, continuation lines included."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```\n", 2)[1]
    entries: dict[str, str] = {}
    path = ""
    for line in block.splitlines():
        if line.startswith("dispatcher/"):
            path, _, text = line.partition(" ")
            entries[path] = text
        elif line.startswith(" ") and path:
            entries[path] += " " + line.strip()
    return entries


def modules() -> list[Path]:
    """Every Python module of the package, but package markers and Alembic's files."""
    return sorted(
        p
        for p in PACKAGE.rglob("*.py")
        if p.name != "__init__.py" and MIGRATIONS not in p.parents and "__pycache__" not in p.parts
    )


def named(entries: dict[str, str], module: Path) -> bool:
    """A top-level module has its own entry; one in a package is named in its package's entry."""
    relative = module.relative_to(PACKAGE)
    if len(relative.parts) == 1:
        return f"dispatcher/{relative}" in entries
    package = "dispatcher/" + "/".join(relative.parts[:-1]) + "/"
    words = re.findall(r"[\w.]+\.py\b", entries.get(package, ""))
    return module.name in words


def test_layout_names_every_module() -> None:
    entries = layout_entries()
    missing = [str(m.relative_to(ROOT)) for m in modules() if not named(entries, m)]
    assert missing == [], "README.md's Layout section does not name these modules"


def test_layout_names_only_what_exists() -> None:
    gone = [path for path in layout_entries() if not (ROOT / path).exists()]
    assert gone == []
