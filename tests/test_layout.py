"""The layout: the README's Layout section against the tree (every module named, nothing that is
gone), and no package importing a module of its own that imports the package back (a cycle
import-linter's sibling contract does not see: a package is not a sibling of its modules)."""

from __future__ import annotations

import re
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "dispatcher"
# Alembic's own files (env.py, the revisions): the Layout names their folder, not each file.
MIGRATIONS = PACKAGE / "store" / "migrations"
# store/__init__.py names its SQL parts in the Store interface (role Protocols after issue 19's
# store split) and still re-exports models.py's records to the store's own modules.
KNOWN_CYCLES = {"dispatcher.store"}


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


def package_cycles() -> list[tuple[str, ...]]:
    """(module, …, package): a module of a package that imports it back, while the package
    (its __init__) imports that module, directly or not. Imports inside functions and under
    TYPE_CHECKING count."""
    graph = grimp.build_graph("dispatcher")
    found = []
    for package in sorted(m for m in graph.modules if graph.find_children(m)):
        for module in sorted(graph.find_descendants(package)):
            back = graph.find_shortest_chain(importer=module, imported=package)
            if back and graph.chain_exists(importer=package, imported=module):
                found.append(back)
    return found


def test_no_package_imports_a_module_that_imports_it_back() -> None:
    cycles = [chain for chain in package_cycles() if chain[-1] not in KNOWN_CYCLES]
    assert cycles == []
