"""Public holidays of a country, from the ``holidays`` package: an office is closed on them."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable

import holidays

Closed = Callable[[dt.date], bool]


def _never(_day: dt.date) -> bool:
    return False


@functools.cache
def closed_days(country: str | None) -> Closed:
    """Whether a day is a public holiday in ``country``; never, for a country the package does
    not know (``known`` says which)."""
    if country is None or not known(country):
        return _never
    calendar = holidays.country_holidays(country)  # its years fill in as days are asked
    return calendar.__contains__


def known(country: str | None) -> bool:
    return country is not None and country in holidays.list_supported_countries()
