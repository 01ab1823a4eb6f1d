"""The file provider's "fake": its own outbox folder, seen through the control API.

Nothing is dialled, refused or called back, so only what can be seen is offered: the faxes
written. The folder holds one number's faxes in the scenarios that use it (``can`` is empty).
"""

from __future__ import annotations

from pathlib import Path

from tests.support.fax_servers.control import Outcome, Refusal, Submission


class FaxFolder:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _cannot(self) -> None:
        raise NotImplementedError("the file provider has no line to script")

    def outcome(self, number: str, *outcomes: Outcome) -> None:
        self._cannot()

    def refuse_next(self, number: str, *refusals: Refusal) -> None:
        self._cannot()

    def drop_webhooks(self, number: str) -> None:
        self._cannot()

    def repeat_webhooks(self, number: str) -> None:
        self._cannot()

    def hold(self, number: str) -> None:
        self._cannot()

    def release(self, number: str) -> None:
        self._cannot()

    def crowd(self, number: str, others: int) -> None:
        self._cannot()

    def listed_pages(self) -> int:
        return 0  # the folder is read, not listed through an API

    def _written(self) -> list[Path]:
        return sorted(self.folder.glob("*.pdf"), key=lambda p: p.stat().st_mtime_ns)

    def job_ids(self, number: str) -> list[str]:
        return [p.stem for p in self._written()]  # the provider's job id is the file's name

    def job_states(self, number: str) -> list[str]:
        return ["written" for _ in self._written()]

    def references(self, number: str) -> list[str | None]:
        return list(self.job_ids(number))  # the file provider names each file after it

    def submissions(self, number: str) -> list[Submission]:
        return []  # a write is not a request: nothing to count

    def final_answers(self, number: str) -> list[int]:
        return []
