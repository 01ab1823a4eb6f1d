"""The send log as a file: one CSV for the CLI and the web app, safe to open in a spreadsheet."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
from collections.abc import Iterable, Iterator
from typing import Any

from dispatcher.models import AttemptRow
from dispatcher.sanitize import csv_writer

LOG_FIELDS = [f.name for f in dataclasses.fields(AttemptRow)]


def cell(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value


def log_values(row: AttemptRow) -> list[Any]:
    return [cell(getattr(row, f)) for f in LOG_FIELDS]


def csv_chunks(header: list[str], rows: Iterable[list[Any]], every: int = 500) -> Iterator[str]:
    """CSV text in chunks (a streamed download never holds the whole log)."""
    buffer = io.StringIO()
    writer = csv_writer(buffer)
    writer.writeheader(header)
    for n, row in enumerate(rows, 1):
        writer.writerow(row)
        if n % every == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
