"""A country's time zone, where it has exactly one: zoneinfo has no country map, so it is read
from ``zone.tab`` (one line per zone, with its one country), where zoneinfo finds its data: the
system's zone folders first, then the ``tzdata`` package."""

from __future__ import annotations

import functools
import zoneinfo
from collections import defaultdict
from importlib import resources
from pathlib import Path


@functools.cache
def _zones_by_country() -> dict[str, tuple[str, ...]]:
    zones: defaultdict[str, list[str]] = defaultdict(list)
    for line in _zone_tab().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        country, _coordinates, zone, *_ = line.split("\t")
        zones[country].append(zone)
    return {country: tuple(names) for country, names in zones.items()}


def _zone_tab() -> str:
    for folder in zoneinfo.TZPATH:
        path = Path(folder) / "zone.tab"
        if path.is_file():
            return path.read_text(encoding="utf-8")
    return resources.files("tzdata.zoneinfo").joinpath("zone.tab").read_text(encoding="utf-8")


def country_zone(country: str) -> str | None:
    """The IANA zone of a country (ISO 3166 alpha-2) with one zone; None for several or unknown
    (China lists Asia/Shanghai and Asia/Urumqi, the United States many: say the target's)."""
    zones = _zones_by_country().get(country.upper(), ())
    return zones[0] if len(zones) == 1 else None


def check_zone(name: str) -> str:
    """``name`` if it is an IANA time zone; ValueError otherwise."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{name!r} is not an IANA time zone") from exc
    return name
