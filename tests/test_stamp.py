"""A folder's stamp reads a file again only when its size or times changed (T5): the dashboard
stamps both folders on every poll."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.sending import catalogue
from dispatcher.sending.catalogue import stamp


def counting_reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every file whose bytes are read from now on."""
    reads: list[Path] = []
    read_bytes = Path.read_bytes

    def counted(path: Path) -> bytes:
        reads.append(path)
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", counted)
    return reads


def test_stamp_reads_only_changed_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("en.j2", "fr.j2", "sub/de.j2"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(f"letter {name}")
    monkeypatch.setattr(catalogue, "_digests", {}, raising=False)  # a cold cache
    reads = counting_reads(monkeypatch)
    first = stamp(tmp_path)
    assert len(reads) == 3
    assert stamp(tmp_path) == first and len(reads) == 3  # nothing changed: nothing read
    (tmp_path / "fr.j2").write_text("letter fr.j2, edited")
    edited = stamp(tmp_path)
    assert edited != first and reads[3:] == [tmp_path / "fr.j2"]
    (tmp_path / "fr.j2").write_text("letter fr.j2")  # put back: the same stamp as before
    assert stamp(tmp_path) == first
