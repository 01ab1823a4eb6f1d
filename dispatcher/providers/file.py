"""The demo's fax provider: writes each fax as a PDF under a folder and reports it delivered.

Nothing is dialled. The folder holds letters signed by supporters: owner-only.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from dispatcher.models import ProviderEvent
from dispatcher.providers import FaxProvider


class FileProvider(FaxProvider):
    name = "file"
    poll_every = 0.0  # its jobs are done as soon as written

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, job_id: str) -> Path:
        return self.folder / f"{job_id}.pdf"

    async def submit(self, pdf: bytes, to: str, reference: str) -> str:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = self.folder / f".{reference}.tmp"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pdf)
        partial.replace(self._path(reference))  # whole or absent: a crash leaves no half fax
        return reference

    async def find(self, reference: str, since: dt.datetime, to: str | None = None) -> str | None:
        return reference if self._path(reference).exists() else None

    async def status(self, job_id: str) -> ProviderEvent | None:
        path = self._path(job_id)
        if not path.exists():
            return ProviderEvent(self.name, job_id, False, dt.datetime.now(dt.UTC), reason="file is gone")
        written = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
        return ProviderEvent(self.name, job_id, True, written, reason=f"written to {path}")
