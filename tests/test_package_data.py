"""What an install ships: every file of the package, its templates and static files too (a wheel
without them serves 500s on every page)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_layout import PACKAGE, ROOT


def shipped(build: Path) -> set[str]:
    """The package's files as setuptools copies them into a build (what a wheel holds)."""
    source = build / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(PACKAGE, source / PACKAGE.name, ignore=shutil.ignore_patterns("__pycache__"))
    command = [
        sys.executable,
        "-c",
        "from setuptools import setup; setup()",
        "-q",
        "build_py",
        "-d",
        str(build / "lib"),
    ]
    subprocess.run(command, cwd=source, check=True, capture_output=True, timeout=120)
    return {str(p.relative_to(build / "lib")) for p in (build / "lib").rglob("*") if p.is_file()}


@pytest.mark.slow  # a setuptools build in a subprocess
def test_every_file_of_the_package_is_shipped(tmp_path: Path) -> None:
    files = {
        str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }
    assert sorted(files - shipped(tmp_path)) == []
