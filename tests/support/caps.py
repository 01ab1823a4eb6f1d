"""Caps per recipient and per domain lifted (README: Caps), for tests that send many letters to
one official and are about something else: pacing, workers, outages, throughput. Where a test
lifts or raises pacing, it lifts the caps too; tests/store/test_caps.py and
tests/campaigns/test_caps_e2e.py are the ones about caps."""

from __future__ import annotations

from typing import Any

NO_CAPS: dict[str, Any] = {"max_per_hour": None, "max_per_day": None, "domain_max_per_hour": None}
NO_CAPS_ENV: dict[str, str] = {f"DISPATCHER_{name.upper()}": "none" for name in NO_CAPS}
