"""Campaigns like real ones, seeded and random: generated, run through the real CLI against the
real SMTP server (tests/support/smtp_server.py), and checked against invariants on what the server
received and on what the store logged.

    scenario = generate(17, "sqlite")            # the same seed always gives the same campaign
    outcome = run_scenario(scenario, tmp_path, database_url)
    problems = check(scenario, outcome)          # readable lines; empty when every invariant holds
    assert not problems, report(scenario, outcome, problems)

A scenario has 1–8 actions of 1–5 targets each (roles ``to`` and ``cc``, some officials named in
two actions, as ``to`` in one and ``cc`` in another), language chains that fall back or find no
template at all (that action is held; or its template is broken), 5–60 supporters with Chinese
or Latin names and consents to all or to some actions (some join after the first run), actions
paused, closed, drafts or past their deadline (in the file or with the CLI), pacing at the
defaults, lifted or tight, and transient (451, 421, a connection dropped at DATA) and permanent
(550 at RCPT for one official) SMTP faults.

``run_scenario`` writes the action files, templates and supporters CSVs, then runs
``dispatcher supporters import``, ``pause``/``close``, ``check`` and ``run --once`` (one worker,
or two at once on PostgreSQL; or a daemon killed with SIGKILL, then restarted under its worker
id) as subprocesses, each with a hard timeout, round after round until nothing sendable is
pending (a retry waits for its time between rounds).

``check`` then holds the outcome to these invariants:

- every consenting supporter × ``to`` target of every sendable action got exactly one letter
  (To, Cc with the action's copies, RCPTs, From name, Content-Language from the language chain,
  salutation and signature in the body); twice only after a kill, and then with the same
  Message-ID, the one derived from its delivery (which tells whose letter it is);
- no supporter's address in any header or body a target receives, except the letter's own
  supporter's as its Reply-To when they chose ``direct`` replies (they do at random);
- nothing for paused, closed, draft, held or past-deadline actions, nothing without consent, no
  letter of its own for a ``cc`` target;
- pacing: in any window of T seconds between two arrivals (RCPT times) an address got at most
  burst + rate × (T + SLACK), accepted letters and every attempt alike, across workers; and the
  deployment at most max(rate_global, 1) + rate_global × (T + SLACK);
- ``run --once`` ends, leaves nothing ``sending`` and nothing that was due when it started;
- the store agrees: one delivery per letter, ``sent`` iff the server accepted it, ``failed`` for
  a refused official; one ``sent`` row per accepted letter, ``retry`` rows = transient faults the
  server answered, ``failed`` rows = 550s to a target, ``interrupted`` rows = the deliveries in
  flight at a kill; ``attempts`` = rows logged;
- ``dispatcher check`` fails iff an action is held, and names exactly the held ones.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from email.headerregistry import Address
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from sqlalchemy import create_engine, text

from dispatcher.channels.email import message_id
from dispatcher.models import AttemptRow, QueueCount
from dispatcher.store import open_store
from tests.support import wire
from tests.support.caps import NO_CAPS_ENV
from tests.support.processes import CLOCK_FREE
from tests.support.smtp_server import Event, Received, ReplyKind, ScriptedHandler, SmtpServer, Stage

# A claimed letter starts within this long of its claim (or is handed back unsent), so a window of
# T seconds of arrivals may hold the tokens of T + SLACK seconds of claims.
SLACK = 1.0

LANGS = ("en", "de", "fr", "es", "zh-Hans", "zh-Hant")
UNASKED_LANGUAGE = "it"  # a held action's only template: a language no action or target asks for
SENDER = "letters@example.org"  # the default DISPATCHER_FROM
MESSAGE_ID_DOMAIN = "example.org"
MAX_ROUNDS = 10  # `run --once` rounds before "still pending" is a failure
CLI_TIMEOUT = 90.0
KILL_SERVER_DELAY = 0.05  # the server holds each 250 this long in the kill variant
KILL_AT = 0.3  # kill -9 once this share of the letters has arrived

Role = Literal["to", "cc"]
Kind = Literal["sqlite", "postgres", "kill", "shape"]


# Pacing ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pacing:
    name: str
    rate: float  # per recipient address, letters/s
    burst: float
    rate_global: float
    env: tuple[tuple[str, str], ...]  # DISPATCHER_* overrides of the defaults
    max_per_address: int  # scenario size limits, so a run stays short
    max_letters: int

    @property
    def global_burst(self) -> float:
        return max(self.rate_global, 1.0)

    @property
    def enforced(self) -> bool:
        """Whether the limits can bind at these sizes (lifted pacing is not checked)."""
        return self.rate < 1000

    @property
    def label(self) -> str:
        return f"pacing={self.name}({self.rate:g}/s burst {self.burst:g}, global {self.rate_global:g}/s)"

    def seconds(self, per_address: Mapping[str, int], letters: int) -> float:
        """How long sending this many letters must take at these limits, at least."""
        slowest = max((max(0.0, n - self.burst) / self.rate for n in per_address.values()), default=0.0)
        return max(slowest, max(0.0, letters - self.global_burst) / self.rate_global)


# Caps lifted at every pacing: a campaign checks pacing, at sizes beyond a default cap (up to 400
# letters to one domain in a run); caps have their own tests (tests/support/caps.py).
UNCAPPED = tuple(NO_CAPS_ENV.items())
DEFAULT = Pacing("default", 2.0, 10, 100.0, UNCAPPED, max_per_address=30, max_letters=400)
LIFTED = Pacing(
    "lifted",
    10_000.0,
    10_000,
    100_000.0,
    (
        ("DISPATCHER_RATE_PER_TARGET", "10000"),
        ("DISPATCHER_BURST_PER_TARGET", "10000"),
        ("DISPATCHER_RATE_GLOBAL", "100000"),
        *UNCAPPED,
    ),
    max_per_address=10**6,
    max_letters=1500,
)
TIGHT = Pacing(
    "tight",
    5.0,
    5,
    15.0,
    (
        ("DISPATCHER_RATE_PER_TARGET", "5"),
        ("DISPATCHER_BURST_PER_TARGET", "5"),
        ("DISPATCHER_RATE_GLOBAL", "15"),
        *UNCAPPED,
    ),
    max_per_address=50,
    max_letters=180,
)


# The campaign ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Official:
    """A person with one mailbox; may be a target of several actions (same id, same address)."""

    id: str
    name: str
    title: str
    email: str
    languages: tuple[str, ...]

    def salutation(self, language: str) -> str:
        return SALUTATIONS[language].format(name=self.name)


@dataclass(frozen=True)
class ActionSpec:
    id: str
    title: str
    targets: tuple[tuple[Official, Role], ...]
    languages: tuple[str, ...]
    templates: tuple[str, ...]  # languages with a template file
    file_status: Literal["active", "paused", "closed", "draft"] = "active"
    control: Literal["pause", "close"] | None = None  # applied with the CLI before running
    deadline: dt.date | dt.datetime = dt.date(2035, 12, 31)
    deadline_passed: bool = False
    timezone: str = "UTC"
    hold: Literal["no-template", "broken-template"] | None = None
    tags: tuple[str, ...] = ()  # campaign tags a supporter may consent to ("tag:<tag>")

    @property
    def to(self) -> list[Official]:
        return [o for o, role in self.targets if role == "to"]

    @property
    def cc(self) -> list[Official]:
        return [o for o, role in self.targets if role == "cc"]

    @property
    def sendable(self) -> bool:
        return (
            self.file_status == "active"
            and self.control is None
            and not self.deadline_passed
            and self.hold is None
        )

    @property
    def state(self) -> str:
        """Why this action sends nothing, or "active"."""
        if self.hold:
            return f"held ({self.hold})"
        if self.file_status != "active":
            return f"{self.file_status} (file)"
        if self.deadline_passed:
            return "deadline passed"
        if self.control == "pause":
            return "paused (CLI)"
        if self.control == "close":
            return "closed (CLI)"
        return "active"

    def role_of(self, email: str) -> Role | None:
        for official, role in self.targets:
            if official.email == email:
                return role
        return None

    def language_for(self, official: Official) -> str | None:
        """The target's first language with a template, else the action's first with one."""
        for language in (*official.languages, *self.languages):
            if language in self.templates:
                return language
        return None

    def describe(self, shared: set[str]) -> str:
        def names(role: Role) -> str:
            return ",".join(o.id + ("*" if o.id in shared else "") for o, r in self.targets if r == role)

        chain = ">".join(self.languages)
        tpl = ",".join(self.templates)
        cc = f" cc:{names('cc')}" if self.cc else ""
        return f"{self.id}{{to:{names('to')}{cc} langs:{chain} tpl:{tpl}}} {self.state}"


@dataclass(frozen=True)
class SupporterSpec:
    email: str  # as written in the CSV (case may differ)
    name: str
    language: str
    city: str
    country: str
    scopes: tuple[str, ...]  # ("all",), action ids or "tag:<tag>"
    opted_in_at: str
    wave: int = 0  # 1: imported after the first wave's letters went out (a supporter who joins late)
    signs: tuple[str, ...] = ()  # the letters' languages they sign; () any
    name_only: bool = False  # their letters show the name alone, no city or country
    direct: bool = False  # replies go straight to them: their address is the letters' Reply-To

    @property
    def address(self) -> str:
        return self.email.lower()

    def consents(self, action: ActionSpec) -> bool:
        tags = {f"tag:{t}" for t in action.tags}
        return any(s == "all" or s == action.id or s in tags for s in self.scopes)

    def signs_in(self, language: str) -> bool:
        return not self.signs or language in self.signs


@dataclass(frozen=True)
class Fault:
    stage: Stage
    reply: ReplyKind
    message: int | None = None  # the n-th transaction
    rcpt: str | None = None  # every RCPT to this address

    @property
    def permanent(self) -> bool:
        return self.reply == "550"

    def describe(self) -> str:
        where = f"#{self.message}" if self.message is not None else f":{self.rcpt}"
        return f"{self.reply}@{self.stage}{where}"


LetterKey = tuple[str, str, str]  # supporter address, action id, `to` target address


@dataclass(frozen=True)
class Letter:
    """One letter the campaign calls for: a consenting supporter × a `to` target of a sendable action."""

    key: LetterKey
    target_id: str
    supporter: SupporterSpec
    language: str
    salutation: str
    cc: tuple[str, ...]  # the action's copies, as in the Cc header
    recipients: tuple[str, ...]  # RCPTs the server should accept: the target, then unrefused copies
    refused: bool  # the target's address is refused (550): the letter must fail, never arrive


@dataclass(frozen=True)
class Scenario:
    seed: int | str
    kind: Kind
    pacing: Pacing
    actions: tuple[ActionSpec, ...]
    supporters: tuple[SupporterSpec, ...]
    faults: tuple[Fault, ...] = ()
    workers: int = 1
    kill: bool = False
    test: str = ""  # the pytest test that runs this kind, for the replay line

    @property
    def backend(self) -> str:
        return "postgres" if self.kind == "postgres" else "sqlite"

    @property
    def refused(self) -> frozenset[str]:
        return frozenset(f.rcpt for f in self.faults if f.permanent and f.rcpt)

    @property
    def transient_faults(self) -> list[Fault]:
        return [f for f in self.faults if not f.permanent]

    @property
    def held(self) -> list[ActionSpec]:
        return [a for a in self.actions if a.hold]

    @property
    def shared(self) -> set[str]:
        """Officials named in more than one action."""
        count = Counter(o.id for a in self.actions for o, _ in a.targets)
        return {official for official, n in count.items() if n > 1}

    def action(self, action_id: str) -> ActionSpec | None:
        return next((a for a in self.actions if a.id == action_id), None)

    def letters(self) -> dict[LetterKey, Letter]:
        return self._letters

    @cached_property
    def _letters(self) -> dict[LetterKey, Letter]:
        out: dict[LetterKey, Letter] = {}
        refused = self.refused
        for action in self.actions:
            if not action.sendable:
                continue
            cc = tuple(o.email for o in action.cc)
            for supporter in self.supporters:
                if not supporter.consents(action):
                    continue
                for target in action.to:
                    language = action.language_for(target)
                    assert language is not None, f"{action.id} × {target.id}: no template (not held?)"
                    if not supporter.signs_in(language):
                        continue
                    key = (supporter.address, action.id, target.email)
                    out[key] = Letter(
                        key=key,
                        target_id=target.id,
                        supporter=supporter,
                        language=language,
                        salutation=target.salutation(language),
                        cc=cc,
                        recipients=(target.email, *(c for c in cc if c not in refused)),
                        refused=target.email in refused,
                    )
        return out

    def load(self) -> tuple[Counter[str], int]:
        """RCPTs attempted per address at least, and transactions: what pacing has to spread."""
        per_address: Counter[str] = Counter()
        letters = self.letters().values()
        for letter in letters:
            per_address[letter.key[2]] += 1
            if not letter.refused:
                for address in letter.cc:
                    per_address[address] += 1
        return per_address, len(letters)

    def paced_seconds(self) -> float:
        per_address, letters = self.load()
        return self.pacing.seconds(per_address, letters)

    def describe(self) -> str:
        shared = self.shared
        consent_all = sum("all" in s.scopes for s in self.supporters)
        late = sum(s.wave > 0 for s in self.supporters)
        _, letters = self.load()
        parts = [
            f"seed={self.seed} {self.kind}",
            f"{self.backend}×{self.workers} worker{'s' if self.workers > 1 else ''}"
            + (" killed+restarted" if self.kill else ""),
            self.pacing.label,
            "; ".join(a.describe(shared) for a in self.actions),
            f"{len(self.supporters)} supporters ({consent_all} consent to all"
            + (f", {late} join after the first run)" if late else ")"),
            f"{letters} letters expected",
            "faults: " + (", ".join(f.describe() for f in self.faults) or "none"),
        ]
        return " | ".join(parts)

    def replay(self) -> str:
        if isinstance(self.seed, int):
            return (
                f"CAMPAIGN_SEED={self.seed} .venv/bin/python -m pytest "
                f"tests/campaigns/test_campaigns.py::{self.test} -x"
            )
        return f".venv/bin/python -m pytest 'tests/campaigns/test_campaigns.py::{self.test}[{self.seed}]'"


# Generator ------------------------------------------------------------------------------------------
SALUTATIONS = {
    "en": "Dear {name}",
    "de": "Sehr geehrte Exzellenz {name}",
    "fr": "Madame, Monsieur {name}",
    "es": "Estimado/a {name}",
    "zh-Hans": "尊敬的{name}",
    "zh-Hant": "尊敬的{name}",
}
OFFICIAL_NAMES = (
    "Ana Ruiz",
    "Jean Dupont",
    "Erika Meier",
    "John Carter",
    "赵明",
    "钱芳",
    "孫立",
    "周文華",
    "Kwame Mensah",
    "Li Hua",
)
OFFICIAL_TITLES = ("Minister of Justice", "President", "Ambassador", "Governor", "Prosecutor General")
ACTION_TITLES = (
    "Missing and arbitrarily detained",
    "Lawyer held incommunicado",
    "Release the student activists",
    "释放被任意拘留的人",
    "Journalist at risk of torture",
    "Stop the forced returns",
    "Uyghur scholar sentenced",
    "維權律師失蹤",
)
LATIN_NAMES = (
    "Anna Müller",
    "José García",
    "Zoë Brown",
    "Seán O'Brien",
    "Li, Wei",
    "Chloé Martin",
    "Marek Nowak",
    "Ingrid Østergaard",
    "Tom Smith",
    "Aiko Tanaka",
)
CHINESE_NAMES = ("林小文", "王芳", "陈杰", "張惠妹", "李明", "黃淑芬", "周杰", "吳雅婷")
PLACES = (
    ("Zürich", "CH"),
    ("Taipei", "TW"),
    ("Hong Kong", "HK"),
    ("Berlin", "DE"),
    ("Lyon", "FR"),
    ("London", "GB"),
    ("Madrid", "ES"),
    ("", ""),
)
TAGS = ("china", "detention", "press-freedom")
# The templates below that print the signer's city under their name.
CITY_SHOWN = ("en", "de", "zh-Hans")
ZONES = ("UTC", "Asia/Taipei", "Europe/London", "America/New_York", "Asia/Shanghai")
PAST_DEADLINES: tuple[dt.date | dt.datetime, ...] = (
    dt.date(2024, 3, 1),
    dt.datetime(2025, 1, 15, 18, 0),
    dt.date(2022, 9, 23),
)
FUTURE_DEADLINES: tuple[dt.date | dt.datetime, ...] = (dt.date(2035, 12, 31), dt.datetime(2034, 6, 30, 18, 0))


def generate(seed: int, kind: Kind, test: str = "") -> Scenario:
    """The campaign for this seed and kind; always the same one."""
    rng = random.Random(f"{kind}:{seed}")
    for _ in range(200):
        scenario = _shrink(_draw(rng, seed, kind, test))
        if scenario is not None:
            return scenario
    raise AssertionError(f"seed {seed} ({kind}): no scenario within the size limits")


def _draw(rng: random.Random, seed: int, kind: Kind, test: str) -> Scenario:
    if kind == "postgres":
        pacing = rng.choice((TIGHT, TIGHT, DEFAULT))
    elif kind == "kill":
        pacing = rng.choice((LIFTED, TIGHT))
    else:
        pacing = rng.choices((DEFAULT, LIFTED, TIGHT), weights=(4, 4, 2))[0]

    officials: list[Official] = []

    def new_official() -> Official:
        n = len(officials) + 1
        official = Official(
            id=f"t{n}",
            name=rng.choice(OFFICIAL_NAMES),
            title=rng.choice(OFFICIAL_TITLES),
            email=f"t{n}@example.org",
            languages=tuple(rng.sample(LANGS, rng.randint(0, 2))),
        )
        officials.append(official)
        return official

    actions: list[ActionSpec] = []
    for i in range(1, rng.randint(1, 8) + 1):
        chosen: list[Official] = []
        for _ in range(rng.randint(1, 5)):
            others = [o for o in officials if o not in chosen]
            chosen.append(rng.choice(others) if others and rng.random() < 0.3 else new_official())
        roles: list[Role] = ["to"]
        roles += ["to" if rng.random() < 0.65 else "cc" for _ in chosen[1:]]
        targets = list(zip(chosen, roles, strict=True))
        rng.shuffle(targets)
        languages = tuple(rng.sample(LANGS, rng.randint(1, 3)))
        r = rng.random()
        hold: Literal["no-template", "broken-template"] | None = None
        file_status: Literal["active", "paused", "closed", "draft"] = "active"
        control: Literal["pause", "close"] | None = None
        passed = False
        if r < 0.10:
            hold = rng.choice(("no-template", "broken-template"))
        elif r < 0.17:
            file_status = "paused"
        elif r < 0.22:
            file_status = "closed"
        elif r < 0.25:
            file_status = "draft"
        elif r < 0.32:
            control = "pause"
        elif r < 0.37:
            control = "close"
        elif r < 0.45:
            passed = True
        if hold == "no-template":
            templates: tuple[str, ...] = (UNASKED_LANGUAGE,)
        else:
            extra = [lang for lang in LANGS if lang not in languages and rng.random() < 0.3]
            templates = tuple(sorted({rng.choice(languages), *extra}))
        actions.append(
            ActionSpec(
                id=f"a{i}",
                title=rng.choice(ACTION_TITLES),
                targets=tuple(targets),
                languages=languages,
                templates=templates,
                file_status=file_status,
                control=control,
                deadline=rng.choice(PAST_DEADLINES if passed else FUTURE_DEADLINES),
                deadline_passed=passed,
                timezone=rng.choice(ZONES),
                hold=hold,
            )
        )
    if not any(a.sendable for a in actions):
        first = actions[0]
        actions[0] = ActionSpec(
            first.id,
            first.title,
            first.targets,
            first.languages,
            (first.languages[0],),
            timezone=first.timezone,
        )

    ids = [a.id for a in actions]
    supporters = []
    low, high = (40, 60) if kind == "kill" else (5, 60)
    count = rng.randint(low, high)
    # Some campaigns gain supporters after their first letters went out: a second import and run.
    late_from = count - max(1, count // 5) if kind != "kill" and rng.random() < 0.3 else count
    for n in range(count):
        chinese = rng.random() < 0.4
        city, country = rng.choice(PLACES)
        if kind == "kill" or rng.random() < 0.5:
            scopes: tuple[str, ...] = ("all",)
        else:
            scopes = tuple(sorted(rng.sample(ids, rng.randint(1, min(3, len(ids))))))
        local = f"s{n}"
        supporters.append(
            SupporterSpec(
                email=f"{local.upper()}@Example.NET" if rng.random() < 0.1 else f"{local}@example.net",
                name=rng.choice(CHINESE_NAMES if chinese else LATIN_NAMES),
                language=rng.choice(LANGS),
                city=city,
                country=country,
                scopes=scopes,
                opted_in_at=f"2025-0{rng.randint(1, 9)}-{rng.randint(10, 28)}T{rng.randint(10, 23)}:15+08:00",
                wave=1 if n >= late_from else 0,
            )
        )

    actions, supporters = _mandates(random.Random(f"{kind}:{seed}:mandates"), actions, supporters)
    # A stream of its own too: who chose direct replies changes nothing else in the campaign.
    replies = random.Random(f"{kind}:{seed}:replies")
    supporters = [replace(s, direct=replies.random() < 0.5) for s in supporters]
    faults: list[Fault] = []
    if kind != "kill" and rng.random() < 0.3:
        sendable_to = sorted({o.email for a in actions if a.sendable for o in a.to})
        faults.append(Fault("rcpt", "550", rcpt=rng.choice(sendable_to)))
    if kind != "kill" and rng.random() < 0.5:
        kinds: list[tuple[Stage, ReplyKind]] = [
            ("data", "451"),
            ("rcpt", "421"),
            ("data", "drop"),
            ("data", "421"),
        ]
        numbers = rng.sample(range(1, 41), rng.randint(1, 4))
        for number in sorted(numbers):
            stage, reply = rng.choice(kinds)
            faults.append(Fault(stage, reply, message=number))
    return Scenario(
        seed=seed,
        kind=kind,
        pacing=pacing,
        actions=tuple(actions),
        supporters=tuple(supporters),
        faults=tuple(faults),
        workers=2 if kind == "postgres" else 1,
        kill=kind == "kill",
        test=test,
    )


def _mandates(
    rng: random.Random, actions: list[ActionSpec], supporters: list[SupporterSpec]
) -> tuple[list[ActionSpec], list[SupporterSpec]]:
    """Campaign tags on actions, and what supporters allow: tags as scopes, the languages they
    sign, their name alone. A stream of its own, so the rest of a seed's campaign is unchanged."""
    tagged = [replace(a, tags=tuple(sorted(rng.sample(TAGS, rng.randint(0, 2))))) for a in actions]
    used = sorted({t for a in tagged for t in a.tags})  # the importer refuses a tag no action has
    people = []
    for person in supporters:
        r = rng.random() if used else 1.0
        if r < 0.2:
            chosen = rng.sample(used, rng.randint(1, len(used)))
            person = replace(person, scopes=tuple(f"tag:{t}" for t in chosen))
        elif r < 0.3:
            person = replace(person, scopes=(*person.scopes, f"tag:{rng.choice(used)}"))
        if rng.random() < 0.2:
            person = replace(person, signs=tuple(sorted(rng.sample(LANGS, rng.randint(1, 3)))))
        people.append(replace(person, name_only=rng.random() < 0.2))
    return tagged, people


def _fits(scenario: Scenario) -> bool:
    per_address, letters = scenario.load()
    if scenario.kill and letters < (120 if scenario.pacing is LIFTED else 60):
        return False
    return letters <= scenario.pacing.max_letters and max(per_address.values(), default=0) <= (
        scenario.pacing.max_per_address
    )


def _shrink(scenario: Scenario) -> Scenario | None:
    """The most supporters (at least five) with which the campaign fits its pacing's time budget."""
    pacing = scenario.pacing

    def first(n: int) -> Scenario:
        return replace(scenario, supporters=scenario.supporters[:n])

    def within(n: int) -> bool:
        per_address, letters = first(n).load()
        return (
            letters <= pacing.max_letters and max(per_address.values(), default=0) <= pacing.max_per_address
        )

    low, high = 5, len(scenario.supporters)
    if not within(low):
        return None
    while low < high:  # the load grows with every supporter: bisect
        middle = (low + high + 1) // 2
        if within(middle):
            low = middle
        else:
            high = middle - 1
    candidate = first(low)
    return candidate if _fits(candidate) and candidate.load()[1] > 0 else None


# Files ------------------------------------------------------------------------------------------------
TEMPLATES: dict[str, tuple[str, str]] = {
    "en": (
        "[{{ action.id }}] Urgent action: {{ action.title }}",
        "{{ target.salutation }},\n\nI am writing about {{ action.title }} ({{ action.reference }}).\n"
        "Please act before {{ action.deadline | date }}.\n\nYours sincerely,\n{{ supporter.name }}\n"
        "{{ supporter.city }} {{ supporter.country_name }}\n{{ today }}\n",
    ),
    "de": (
        "[{{ action.id }}] Dringende Aktion: {{ action.title }}",
        "{{ target.salutation }},\n\nich schreibe Ihnen wegen {{ action.title }}.\n\n"
        "Hochachtungsvoll\n{{ supporter.name }}\n{{ supporter.city }} {{ supporter.country_name }}\n",
    ),
    "fr": (
        "[{{ action.id }}] Action urgente : {{ action.title }}",
        "{{ target.salutation }},\n\nJe vous écris au sujet de {{ action.title }}.\n\n"
        "Veuillez agréer mes salutations distinguées.\n{{ supporter.name }}\n{{ today }}\n",
    ),
    "es": (
        "[{{ action.id }}] Acción urgente: {{ action.title }}",
        "{{ target.salutation }}:\n\nLe escribo acerca de {{ action.title }}.\n\nAtentamente,\n"
        "{{ supporter.name }}\n",
    ),
    "zh-Hans": (
        "[{{ action.id }}] 紧急行动：{{ action.title }}",
        "{{ target.salutation }}：\n\n我就{{ action.title }}一事致函。\n\n此致\n敬礼\n{{ supporter.name }}\n"
        "{{ supporter.city }} {{ supporter.country_name }}\n{{ today }}\n",
    ),
    "zh-Hant": (
        "[{{ action.id }}] 緊急行動：{{ action.title }}",
        "{{ target.salutation }}：\n\n我就{{ action.title }}一事致函。\n\n此致\n敬禮\n{{ supporter.name }}\n",
    ),
    UNASKED_LANGUAGE: (
        "[{{ action.id }}] Azione urgente",
        "{{ target.salutation }},\n{{ supporter.name }}\n",
    ),
}
BROKEN_BODY = "{{ target.salutation }},\n{{ supporter.nickname }}\n"
# ``check`` holds an action whose template drops the supporters' own words.
WORDS = "{% if supporter.words %}{{ supporter.words }}{% endif %}"


PERSON_COLUMNS = ("email", "name", "language", "city", "country")
CSV_COLUMNS = (
    *PERSON_COLUMNS,
    "scope",
    "channels",
    "consent_version",
    "opted_in_at",
    "languages",
    "name_display",
    "replies",
)


def write_files(scenario: Scenario, root: Path) -> tuple[Path, Path, list[Path]]:
    """Action files, templates and a supporters CSV per wave of imports under ``root``."""
    actions_dir, templates_dir = root / "actions", root / "templates"
    actions_dir.mkdir(parents=True, exist_ok=True)
    for action in scenario.actions:
        data: dict[str, Any] = {
            "id": action.id,
            "title": action.title,
            "reference": f"UA {action.id.upper()}/25",
            "deadline": action.deadline,
            "timezone": action.timezone,
            "status": action.file_status,
            "languages": list(action.languages),
            "tags": list(action.tags),
            "targets": [
                {
                    "id": official.id,
                    "name": official.name,
                    "title": official.title,
                    "role": role,
                    "languages": list(official.languages),
                    "salutation": {lang: official.salutation(lang) for lang in LANGS},
                    "email": official.email,
                    "channels": ["email"],
                }
                for official, role in action.targets
            ],
        }
        (actions_dir / f"{action.id}.yaml").write_text(
            yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8"
        )
        folder = templates_dir / action.id
        folder.mkdir(parents=True, exist_ok=True)
        for language in action.templates:
            subject, body = TEMPLATES[language]
            if action.hold == "broken-template":
                body = BROKEN_BODY
            (folder / f"{language}.j2").write_text(
                f"{{% block subject %}}{subject}{{% endblock %}}"
                f"{{% block body %}}{body}{WORDS}{{% endblock %}}",
                encoding="utf-8",
            )
    files = []
    for wave in range(1 + max((s.wave for s in scenario.supporters), default=0)):
        path = root / f"supporters-{wave}.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            # Every supporter agrees to both channels: which letters go is up to the actions.
            writer.writerow(CSV_COLUMNS)
            for s in scenario.supporters:
                if s.wave == wave:
                    person = [s.email, s.name, s.language, s.city, s.country, ";".join(s.scopes)]
                    display = "name" if s.name_only else "full"
                    replies = "direct" if s.direct else ""  # empty: the default, organisation
                    writer.writerow(
                        [*person, "email;fax", "v1", s.opted_in_at, ";".join(s.signs), display, replies]
                    )
        files.append(path)
    return actions_dir, templates_dir, files


# Running ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeliveryRow:
    id: int
    action_id: str
    target_id: str
    channel: str
    status: str
    attempts: int
    supporter: str  # email


@dataclass
class Outcome:
    received: list[Received] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    deliveries: list[DeliveryRow] = field(default_factory=list)
    attempts: list[AttemptRow] = field(default_factory=list)
    secret: bytes | None = None
    problems: list[str] = field(default_factory=list)  # found while running
    in_flight_at_kill: set[int] = field(default_factory=set)
    received_at_kill: int = 0
    rounds: int = 0
    seconds: float = 0.0
    log_dir: Path | None = None

    def line(self) -> str:
        sent_by = Counter(a.worker for a in self.attempts if a.outcome == "sent")
        workers = ", ".join(f"{w}: {n}" for w, n in sorted(sent_by.items())) or "none"
        kill = f"; kill -9 after {self.received_at_kill} letters" if self.received_at_kill else ""
        return (
            f"{len(self.received)} letters received in {self.seconds:.1f} s over {self.rounds} "
            f"`run --once` round(s); sent by worker: {workers}{kill}; logs in {self.log_dir}"
        )


def dispatcher_executable() -> str:
    beside = Path(sys.executable).with_name("dispatcher")
    found = str(beside) if beside.exists() else shutil.which("dispatcher")
    if not found:
        raise AssertionError("the dispatcher console script is not installed")
    return found


def _tail(path: Path, lines: int = 12) -> str:
    try:
        content = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n      ".join(content[-lines:]) or "(empty log)"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Runner:
    def __init__(self, scenario: Scenario, root: Path, database_url: str, smtp: SmtpServer) -> None:
        self.scenario = scenario
        self.root = root
        self.database_url = database_url
        self.smtp = smtp
        self.exe = dispatcher_executable()
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.outcome = Outcome(log_dir=self.logs)
        actions_dir, templates_dir, self.csv_files = write_files(scenario, root)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
        env.update(
            {
                "DISPATCHER_DATABASE_URL": database_url,
                "DISPATCHER_ACTIONS_DIR": str(actions_dir),
                "DISPATCHER_TEMPLATES_DIR": str(templates_dir),
                "DISPATCHER_OUTBOX": str(root / "outbox"),
                "DISPATCHER_SMTP_URL": smtp.url,
                "DISPATCHER_SETTINGS": "/nonexistent",
                "DISPATCHER_RETRY_INITIAL": "1",
                **CLOCK_FREE,
                **dict(scenario.pacing.env),
            }
        )
        if scenario.kill:
            env["DISPATCHER_SMTP_POOL"] = "2"
        self.env = env
        self.sendable = {a.id for a in scenario.actions if a.sendable}
        self._runs = 0

    def problem(self, text: str) -> None:
        self.outcome.problems.append(text)

    def cli(self, *args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [self.exe, *args],
                env=self.env,
                cwd=self.root,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"`dispatcher {' '.join(args)}` did not end within {timeout:.0f} s") from exc

    def import_supporters(self, wave: int) -> None:
        path = self.csv_files[wave]
        done = self.cli("supporters", "import", str(path))
        assert done.returncode == 0, f"supporters import of {path.name} failed:\n{done.stdout}\n{done.stderr}"

    def prepare(self) -> None:
        self.import_supporters(0)
        for action in self.scenario.actions:
            if action.control:
                done = self.cli(action.control, action.id)
                assert done.returncode == 0, f"`dispatcher {action.control} {action.id}`: {done.stderr}"
        self._check_command()

    def _check_command(self) -> None:
        done = self.cli("check")
        held = [a.id for a in self.scenario.held]
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        if held and done.returncode == 0:
            self.problem(f"`dispatcher check` passed although {', '.join(held)} has no usable template")
        if not held and done.returncode != 0:
            self.problem(f"`dispatcher check` failed with nothing held: {' / '.join(errors) or done.stderr}")
        for action in self.scenario.actions:
            mentioned = [line for line in errors if f"{os.sep}{action.id}.yaml:" in line]
            if action.hold and not mentioned:
                self.problem(f"`dispatcher check` does not name held action {action.id}: {errors}")
            if not action.hold and mentioned:
                self.problem(f"`dispatcher check` reports {action.id}, which has templates: {mentioned}")

    # `run --once`, one or two workers at once --------------------------------------------------------
    def run_once(self, workers: Sequence[str | None], timeout: float) -> bool:
        """Every worker's `run --once` at the same time; False if one hung or failed."""
        self._runs += 1
        procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        for worker in workers:
            log = self.logs / f"run{self._runs}-{worker or 'default'}.log"
            command = [self.exe, "run", "--once", *(["--worker-id", worker] if worker else [])]
            with log.open("wb") as fh:
                procs.append(
                    (
                        worker or "(default)",
                        subprocess.Popen(
                            command, env=self.env, cwd=self.root, stdout=fh, stderr=subprocess.STDOUT
                        ),
                        log,
                    )
                )
        deadline = time.monotonic() + timeout
        ok = True
        for name, proc, log in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()  # only the process this runner started
                proc.wait(timeout=10)
                self.problem(
                    f"run --once must end: worker {name} was still running after {timeout:.0f} s "
                    f"(round {self._runs}); its last lines:\n      {_tail(log)}"
                )
                ok = False
                continue
            if proc.returncode != 0:
                self.problem(
                    f"run --once (worker {name}, round {self._runs}) exited {proc.returncode}:\n"
                    f"      {_tail(log)}"
                )
                ok = False
        return ok

    def queue(self) -> list[QueueCount]:
        store = open_store(self.database_url, migrate=False)
        try:
            return store.queue_counts()
        finally:
            store.close()

    def rounds(self, workers: Sequence[str | None], first_timeout: float) -> bool:
        """`run --once` until nothing sendable is pending; retries wait for their time between rounds."""
        timeout = first_timeout
        for _ in range(MAX_ROUNDS):
            started = _utcnow()
            self.outcome.rounds += 1
            if not self.run_once(workers, timeout):
                return False
            timeout = 30 + 2 * self.scenario.paced_seconds()
            left = [
                r for r in self.queue() if r.action_id in self.sendable and r.status in ("pending", "sending")
            ]
            if not left:
                return True
            sending = [r for r in left if r.status == "sending"]
            if sending:
                self.problem(
                    f"after every worker's run --once exited, {sum(r.count for r in sending)} deliveries are "
                    f"still 'sending': {_groups(sending)}"
                )
                return False
            overdue = [r for r in left if r.oldest_due is not None and r.oldest_due < started]
            if overdue:
                self.problem(
                    f"run --once (round {self.outcome.rounds}) ended leaving letters that were due before it "
                    f"started: {_groups(overdue)}"
                )
                return False
            if not self.scenario.transient_faults and not self.scenario.kill:
                self.problem(
                    f"run --once left letters waiting for a retry though no transient fault was scripted: "
                    f"{_groups(left)}"
                )
            due = min((r.oldest_due for r in left if r.oldest_due is not None), default=_utcnow())
            time.sleep(min(30.0, max(0.05, (due - _utcnow()).total_seconds() + 0.05)))
        self.problem(f"letters still pending after {MAX_ROUNDS} rounds of run --once: {_groups(left)}")
        return False

    # kill -9 mid-send, then restart under the same worker id -------------------------------------------
    def kill_and_restart(self) -> None:
        _, letters = self.scenario.load()
        worker = "k0"
        log = self.logs / "daemon.log"
        with log.open("wb") as fh:
            daemon = subprocess.Popen(
                [self.exe, "run", "--worker-id", worker],
                env=self.env,
                cwd=self.root,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        try:
            wanted = max(1, int(letters * KILL_AT))
            wait = 30 + 2 * self.scenario.paced_seconds() * KILL_AT
            deadline = time.monotonic() + wait
            while len(self.smtp.received()) < wanted and daemon.poll() is None:
                if time.monotonic() > deadline:
                    self.problem(
                        f"the daemon sent {len(self.smtp.received())} of the {wanted} letters to wait for "
                        f"before the kill within {wait:.0f} s:\n      {_tail(log)}"
                    )
                    break
                time.sleep(0.01)
            if daemon.poll() is not None:
                self.problem(f"the daemon exited ({daemon.returncode}) before the kill:\n      {_tail(log)}")
                return
            daemon.send_signal(signal.SIGKILL)
            daemon.wait(timeout=10)
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait(timeout=10)
        time.sleep(KILL_SERVER_DELAY * 4)  # what was on the wire at the kill reaches the server's list
        self.outcome.received_at_kill = len(self.smtp.received())
        self.outcome.in_flight_at_kill = {
            d.id for d in read_deliveries(self.database_url) if d.status == "sending"
        }
        if not 0 < self.outcome.received_at_kill < letters:
            self.problem(
                f"the kill did not land mid-send: {self.outcome.received_at_kill} of {letters} received"
            )
        self.rounds([worker], 30 + 2 * self.scenario.paced_seconds())

    def collect(self) -> None:
        self.outcome.received = self.smtp.received()
        self.outcome.events = self.smtp.events()
        try:
            self.outcome.deliveries = read_deliveries(self.database_url)
            store = open_store(self.database_url, migrate=False)
            try:
                self.outcome.attempts = list(store.attempt_log())
                self.outcome.secret = store.instance_secret()
            finally:
                store.close()
        except Exception as exc:  # a broken store is a finding, reported with the rest
            self.problem(f"could not read the store: {type(exc).__name__}: {exc}")


def _groups(rows: Iterable[QueueCount]) -> str:
    by: dict[tuple[str, str], int] = defaultdict(int)
    for r in rows:
        by[(r.action_id, r.target_id)] += r.count
    shown = [f"{a} × {t}: {n}" for (a, t), n in sorted(by.items())]
    return ", ".join(shown[:12]) + (f" … ({len(shown)} groups)" if len(shown) > 12 else "")


def read_deliveries(database_url: str) -> list[DeliveryRow]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT d.id, d.action_id, d.target_id, d.channel, d.status, d.attempts, s.email "
                    "FROM deliveries d JOIN supporters s ON s.id = d.supporter_id ORDER BY d.id"
                )
            ).all()
    finally:
        engine.dispose()
    return [DeliveryRow(int(r[0]), r[1], r[2], r[3], r[4], int(r[5]), r[6]) for r in rows]


def run_scenario(scenario: Scenario, root: Path, database_url: str) -> Outcome:
    """Set the campaign up through the CLI, send it, and collect what the server and store hold."""
    handler = ScriptedHandler(delay=KILL_SERVER_DELAY if scenario.kill else 0.0)
    started = time.monotonic()
    with SmtpServer(handler) as smtp:
        for fault in scenario.faults:
            smtp.fail(
                at=fault.stage,
                reply=fault.reply,
                rcpt=fault.rcpt,
                messages=None if fault.message is None else {fault.message},
            )
        runner = Runner(scenario, root, database_url, smtp)
        runner.prepare()
        first_timeout = 30 + 2 * scenario.paced_seconds()
        if scenario.kill:
            runner.kill_and_restart()
        else:
            workers: list[str | None] = (
                [f"w{i}" for i in range(scenario.workers)] if scenario.workers > 1 else [None]
            )
            finished = runner.rounds(workers, first_timeout)
            for wave in range(1, len(runner.csv_files)):
                if not finished:
                    break
                runner.import_supporters(wave)
                finished = runner.rounds(workers, first_timeout)
        time.sleep(0.1)
        runner.collect()
    runner.outcome.seconds = time.monotonic() - started
    return runner.outcome


# Checking ------------------------------------------------------------------------------------------------
SUBJECT_ACTION = re.compile(r"^\[([a-z0-9][a-z0-9_-]*)\]")
DELIVERY_ID = wire.DELIVERY_ID


@dataclass(frozen=True)
class Got:
    """A received message, parsed."""

    received: Received
    key: LetterKey | None
    to: tuple[str, ...]
    cc: tuple[str, ...]
    from_name: str
    from_address: str
    language: str
    subject: str
    body: str


def _addresses(value: Any) -> tuple[str, ...]:
    found: Sequence[Address] = getattr(value, "addresses", ()) if value is not None else ()
    return tuple(str(a.addr_spec).lower() for a in found)


def parse(received: Received, signers: Mapping[int, str]) -> Got:
    """``signers``: the supporter address of each delivery, which the Message-ID names (a
    letter need not carry the supporter's address: most choose replies to the organisation)."""
    message = received.message()
    to = _addresses(message["To"])
    cc = _addresses(message["Cc"])
    senders: Sequence[Address] = getattr(message["From"], "addresses", ())
    subject = str(message["Subject"] or "")
    match = SUBJECT_ACTION.match(subject)
    body = message.get_content() if message.get_content_type() == "text/plain" else ""
    delivery = DELIVERY_ID.match(received.message_id or "")
    signer = signers.get(int(delivery.group(1))) if delivery else None
    key = (signer, match.group(1), to[0]) if signer and match and len(to) == 1 else None
    return Got(
        received=received,
        key=key,
        to=to,
        cc=cc,
        from_name=str(senders[0].display_name) if senders else "",
        from_address=str(senders[0].addr_spec).lower() if senders else "",
        language=str(message["Content-Language"] or ""),
        subject=subject,
        body=str(body),
    )


class Findings:
    """Problems grouped by kind, each kind with a count and the first few examples."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._grouped: dict[str, list[str]] = defaultdict(list)

    def add(self, line: str) -> None:
        self.lines.append(line)

    def example(self, kind: str, example: str) -> None:
        self._grouped[kind].append(example)

    def all(self) -> list[str]:
        out = list(self.lines)
        for kind, examples in self._grouped.items():
            more = f" … and {len(examples) - 3} more" if len(examples) > 3 else ""
            out.append(f"{kind} ({len(examples)}×), e.g. " + "; ".join(examples[:3]) + more)
        return out


def check(scenario: Scenario, outcome: Outcome) -> list[str]:
    """Every invariant, on the server's messages and on the store; readable problem lines."""
    findings = Findings()
    for problem in outcome.problems:
        findings.add(problem)
    expected = scenario.letters()
    signers = {d.id: d.supporter.lower() for d in outcome.deliveries}
    got = [parse(r, signers) for r in outcome.received]
    by_key: dict[LetterKey, list[Got]] = defaultdict(list)
    for g in got:
        _check_addresses(scenario, g, findings)
        if g.key is None:
            findings.example(
                "a letter that cannot be told apart (a delivery's Message-ID, one To, [action] in Subject)",
                f"#{g.received.number} To={g.to} Message-ID={g.received.message_id} Subject={g.subject!r}",
            )
            continue
        by_key[g.key].append(g)
    _check_letters(scenario, outcome, expected, by_key, findings)
    _check_unexpected(scenario, expected, by_key, findings)
    if outcome.secret is not None:
        _check_store(scenario, outcome, expected, by_key, findings)
    _check_pacing(scenario, outcome, findings)
    return findings.all()


def _check_addresses(scenario: Scenario, g: Got, findings: Findings) -> None:
    """No supporter's address reaches a target, in any header or the body, except the letter's
    own supporter's as its Reply-To when they chose direct replies."""
    own, number = g.key[0] if g.key else None, g.received.number
    chose = {s.address: s.direct for s in scenario.supporters}
    reply_to = (g.received.reply_to or "").lower()
    if reply_to and (reply_to != own or not chose.get(reply_to, False)):
        findings.example("a Reply-To its supporter did not choose", f"#{number}: {reply_to}")
    if own and chose.get(own) and reply_to != own:
        findings.example("no Reply-To for a supporter who chose direct replies", f"#{number}: {own}")
    for address in wire.in_text(g.received, chose, g.body):
        findings.example("a supporter's address in a letter to a target", f"#{number}: {address}")


def _check_letters(
    scenario: Scenario,
    outcome: Outcome,
    expected: Mapping[LetterKey, Letter],
    by_key: Mapping[LetterKey, list[Got]],
    findings: Findings,
) -> None:
    missing: dict[tuple[str, str], list[str]] = defaultdict(list)
    totals: Counter[tuple[str, str]] = Counter()
    for key, letter in expected.items():
        supporter, action_id, target = key
        totals[(action_id, target)] += 1
        copies = by_key.get(key, [])
        if letter.refused:
            if copies:
                findings.example(
                    "a letter to a target whose server refuses it (550) was accepted", f"{key} ×{len(copies)}"
                )
            continue
        if not copies:
            missing[(action_id, target)].append(supporter)
            continue
        ids = {g.received.message_id for g in copies}
        if len(copies) > 1:
            if not scenario.kill:
                findings.example(
                    "the same letter received twice (no kill in this scenario)", f"{key} ×{len(copies)}"
                )
            elif len(ids) > 1:
                findings.example("a letter re-sent with a new Message-ID", f"{key}: {sorted(map(str, ids))}")
            if len(copies) > 2:
                findings.example("a letter received three times or more", f"{key} ×{len(copies)}")
        for g in copies:
            _check_message(letter, g, findings)
    for (action_id, target), supporters in sorted(missing.items()):
        total = totals[(action_id, target)]
        shown = ", ".join(supporters[:3]) + (" …" if len(supporters) > 3 else "")
        findings.add(
            f"{action_id} → {target}: {total - len(supporters)} of {total} letters arrived "
            f"(missing from {shown})"
        )


def _check_message(letter: Letter, g: Got, findings: Findings) -> None:
    where = f"{letter.key[1]} → {letter.key[2]} from {letter.key[0]}"
    rcpts = tuple(a.lower() for a in g.received.rcpt_tos)
    if rcpts[:1] != letter.recipients[:1] or sorted(rcpts[1:]) != sorted(letter.recipients[1:]):
        findings.example(
            "RCPTs accepted ≠ the target then its copies", f"{where}: {rcpts} ≠ {letter.recipients}"
        )
    if sorted(g.cc) != sorted(letter.cc):
        findings.example("Cc header ≠ the action's cc targets", f"{where}: {g.cc} ≠ {letter.cc}")
    if g.language != letter.language:
        findings.example(
            "Content-Language ≠ the target's language chain", f"{where}: {g.language} ≠ {letter.language}"
        )
    if letter.salutation not in g.body:
        findings.example(
            "body lacks the salutation in the letter's language", f"{where}: {letter.salutation!r}"
        )
    if letter.supporter.name not in g.body:
        findings.example("body is not signed by the supporter", f"{where}: {letter.supporter.name!r}")
    person = letter.supporter
    if person.city and letter.language in CITY_SHOWN:
        shown = f"{person.name}\n{person.city} " in g.body.replace("\r\n", "\n")
        if shown == person.name_only:
            wanted = "the name alone" if person.name_only else "name and city"
            findings.example(f"the signature does not show {wanted}", f"{where}: {person.city!r}")
    if g.from_address != SENDER or g.from_name != letter.supporter.name:
        findings.example(
            "From ≠ the supporter's name at the organisation's address",
            f"{where}: {g.from_name!r} <{g.from_address}>",
        )
    if not g.received.message_id:
        findings.example("a letter without Message-ID", where)


def _check_unexpected(
    scenario: Scenario,
    expected: Mapping[LetterKey, Letter],
    by_key: Mapping[LetterKey, list[Got]],
    findings: Findings,
) -> None:
    unexpected: dict[str, Counter[str]] = defaultdict(Counter)
    supporters = {s.address: s for s in scenario.supporters}
    for key, copies in by_key.items():
        if key in expected:
            continue
        supporter, action_id, target = key
        action = scenario.action(action_id)
        person = supporters.get(supporter)
        if action is None:
            why = f"unknown action {action_id}"
        elif not action.sendable:
            why = f"{action_id} is {action.state}: expected nothing"
        elif person is None:
            why = f"{supporter} is not a supporter"
        elif not person.consents(action):
            why = f"{supporter} gave no consent to {action_id}"
        elif not all(person.signs_in(action.language_for(o) or "") for o in action.to if o.email == target):
            why = f"{supporter} does not sign letters in the language {target} is written to"
        elif action.role_of(target) == "cc":
            why = f"{target} is a cc of {action_id}: copied, never a letter of its own"
        else:
            why = f"{target} is not a target of {action_id}"
        unexpected[why][target] += len(copies)
    for why, targets in sorted(unexpected.items()):
        findings.add(
            f"unexpected letters: {why}: " + ", ".join(f"{t} ×{n}" for t, n in sorted(targets.items()))
        )


def _check_store(
    scenario: Scenario,
    outcome: Outcome,
    expected: Mapping[LetterKey, Letter],
    by_key: Mapping[LetterKey, list[Got]],
    findings: Findings,
) -> None:
    assert outcome.secret is not None
    targets = {a.id: {o.id: (o.email, role) for o, role in a.targets} for a in scenario.actions}
    sendable = {a.id for a in scenario.actions if a.sendable}
    rows_of: dict[int, list[AttemptRow]] = defaultdict(list)
    for attempt in outcome.attempts:
        rows_of[attempt.delivery_id].append(attempt)
    seen: dict[LetterKey, DeliveryRow] = {}
    for d in outcome.deliveries:
        email, role = targets.get(d.action_id, {}).get(d.target_id, ("?", None))
        key = (d.supporter.lower(), d.action_id, email)
        outcomes = [a.outcome for a in rows_of.get(d.id, [])]
        if d.channel != "email":
            findings.example("a delivery on a channel no target has", f"{d.id} {d.channel}")
        if role == "cc":
            findings.example("a delivery of its own for a cc target", f"{d.action_id} × {d.target_id}")
        if key in seen:
            findings.example("two deliveries for one letter", f"{key}: {seen[key].id} and {d.id}")
        seen[key] = d
        if d.action_id not in sendable:
            if outcomes or d.status in ("sent", "sending", "failed"):
                findings.example(
                    "an action that may not send has attempts",
                    f"{d.action_id} ({_state(scenario, d.action_id)}) delivery {d.id}: {d.status} {outcomes}",
                )
            continue
        letter = expected.get(key)
        if letter is None:
            findings.example("a delivery for a supporter without consent", f"{key} ({d.status})")
            continue
        arrived = len(by_key.get(key, []))
        want = "failed" if letter.refused else "sent"
        if d.status != want:
            findings.example(
                f"a delivery that should be {want} is not",
                f"{d.action_id} × {d.target_id} #{d.id}: {d.status} {outcomes}",
            )
        if outcomes.count("sent") != (1 if arrived else 0):
            findings.example(
                "the log's 'sent' rows ≠ what the server accepted",
                f"{d.action_id} × {d.target_id} #{d.id}: received {arrived}×, log {outcomes}",
            )
        if d.attempts != len(outcomes):
            findings.example("attempts counted ≠ attempts logged", f"#{d.id}: {d.attempts} vs {outcomes}")
        mid = message_id(outcome.secret, d.id, MESSAGE_ID_DOMAIN)
        for g in by_key.get(key, []):
            if g.received.message_id != mid:
                findings.example(
                    "a letter's Message-ID is not its delivery's", f"#{d.id}: {g.received.message_id} ≠ {mid}"
                )
        if arrived > 1 and d.id not in outcome.in_flight_at_kill:
            findings.example(
                "received twice without being in flight at the kill", f"#{d.id} {key} ×{arrived}"
            )
    planned_missing = [k for k in expected if k not in seen]
    if planned_missing:
        findings.add(
            f"{len(planned_missing)} letters were never planned as deliveries, e.g. "
            + ", ".join(f"{a} → {t} from {s}" for s, a, t in planned_missing[:3])
        )
    _check_accounting(scenario, outcome, findings)


def _state(scenario: Scenario, action_id: str) -> str:
    action = scenario.action(action_id)
    return action.state if action else "unknown"


def _check_accounting(scenario: Scenario, outcome: Outcome, findings: Findings) -> None:
    """Log rows of each outcome ≡ what the server answered: faults fired, refusals, the kill."""
    logged = Counter(a.outcome for a in outcome.attempts)
    transient = [e for e in outcome.events if e.reply in ("421", "451", "drop")]
    first_rcpt: dict[int, Event] = {}
    for e in outcome.events:
        if e.stage == "rcpt" and e.number not in first_rcpt:
            first_rcpt[e.number] = e
    refused = [e for e in first_rcpt.values() if e.reply == "550"]
    if logged["retry"] != len(transient):
        fired = Counter(f"{e.reply}@{e.stage}" for e in transient)
        findings.add(
            f"log has {logged['retry']} 'retry' rows; the server answered {len(transient)} transient faults "
            f"({dict(fired)})"
        )
    if logged["failed"] != len(refused):
        findings.add(
            f"log has {logged['failed']} 'failed' rows; the server refused {len(refused)} targets with 550 "
            f"({sorted({str(e.rcpt) for e in refused})})"
        )
    accepted = len({g.message_id for g in outcome.received})
    if logged["sent"] != accepted:
        findings.add(f"log has {logged['sent']} 'sent' rows; the server accepted {accepted} distinct letters")
    interrupted = Counter(a.delivery_id for a in outcome.attempts if a.outcome == "interrupted")
    if not scenario.kill and interrupted:
        findings.add(f"{sum(interrupted.values())} 'interrupted' rows without any kill")
    if scenario.kill and set(interrupted) != outcome.in_flight_at_kill:
        findings.add(
            f"'interrupted' rows for {len(interrupted)} deliveries; {len(outcome.in_flight_at_kill)} were "
            f"in flight at the kill (only in the log: "
            f"{sorted(set(interrupted) - outcome.in_flight_at_kill)[:5]}, "
            f"only in flight: {sorted(outcome.in_flight_at_kill - set(interrupted))[:5]})"
        )
    if scenario.kill and any(n > 1 for n in interrupted.values()):
        findings.add("a delivery was interrupted twice by one kill")
    other = set(logged) - {"sent", "retry", "failed", "interrupted"}
    if other:
        findings.add(f"unknown outcomes in the log: {sorted(other)}")


# Pacing -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    count: int
    start: float
    span: float
    allowed: float


def worst_window(times: Sequence[float], rate: float, burst: float, slack: float = SLACK) -> Window | None:
    """The window of arrivals that most exceeds burst + rate × (T + slack), if any does."""
    ordered = sorted(times)
    worst: Window | None = None
    excess = 0.0
    for i, start in enumerate(ordered):
        for j in range(i + max(0, math.floor(burst)), len(ordered)):
            span = ordered[j] - start
            allowed = burst + rate * (span + slack)
            count = j - i + 1
            if count - allowed > excess:
                excess = count - allowed
                worst = Window(count, start, span, allowed)
    return worst


def _check_pacing(scenario: Scenario, outcome: Outcome, findings: Findings) -> None:
    pacing = scenario.pacing
    if not pacing.enforced:
        return
    worker_of = {}
    mids = {}
    if outcome.secret is not None:
        mids = {message_id(outcome.secret, d.id, MESSAGE_ID_DOMAIN): d.id for d in outcome.deliveries}
        worker_of = {a.delivery_id: a.worker for a in outcome.attempts if a.outcome == "sent"}
    t0 = min((e.at for e in outcome.events), default=0.0)

    def describe(what: str, window: Window, rate: float, burst: float, workers: Counter[str]) -> str:
        split = f" (sent by {', '.join(f'{w}: {n}' for w, n in sorted(workers.items()))})" if workers else ""
        return (
            f"pacing: {what} got {window.count} in {window.span:.2f} s from +{window.start - t0:.2f} s; "
            "allowed "
            f"{burst:g} + {rate:g}/s × ({window.span:.2f} + {SLACK:g}) s = {window.allowed:.1f}{split}"
        )

    def workers_in(window: Window, arrivals: Sequence[tuple[float, str | None]]) -> Counter[str]:
        return Counter(
            worker_of.get(mids.get(mid or "", -1), "?")
            for at, mid in arrivals
            if window.start <= at <= window.start + window.span
        )

    accepted: dict[str, list[tuple[float, str | None]]] = defaultdict(list)
    for r in outcome.received:
        for rcpt, at in r.arrivals():
            accepted[rcpt.lower()].append((at, r.message_id))
    flagged: set[str] = set()
    for address, arrivals in sorted(accepted.items()):
        window = worst_window([at for at, _ in arrivals], pacing.rate, pacing.burst)
        if window:
            flagged.add(address)
            workers = workers_in(window, arrivals)
            findings.add(
                describe(f"{address} (letters accepted)", window, pacing.rate, pacing.burst, workers)
            )
    # Attempts count too: a refused or retried letter still reached the official's server.
    attempted: dict[str, list[float]] = defaultdict(list)
    for e in outcome.events:
        if e.stage == "rcpt" and e.rcpt:
            attempted[e.rcpt.lower()].append(e.at)
    for address, times in sorted(attempted.items()):
        window = worst_window(times, pacing.rate, pacing.burst)
        if window and address not in flagged:
            what = f"{address} (every RCPT, refused or retried ones too)"
            findings.add(describe(what, window, pacing.rate, pacing.burst, Counter()))
    letters = [(min(r.rcpt_at or (r.at,)), r.message_id) for r in outcome.received]
    window = worst_window([at for at, _ in letters], pacing.rate_global, pacing.global_burst)
    if window:
        findings.add(
            describe(
                "the deployment (global, letters)",
                window,
                pacing.rate_global,
                pacing.global_burst,
                workers_in(window, letters),
            )
        )


# Reporting ------------------------------------------------------------------------------------------------
def per_recipient(scenario: Scenario, outcome: Outcome) -> list[str]:
    """Letters per recipient address, expected → got, where they differ."""
    want: Counter[str] = Counter()
    for letter in scenario.letters().values():
        if not letter.refused:
            for address in letter.recipients:
                want[address] += 1
    have: Counter[str] = Counter(rcpt.lower() for r in outcome.received for rcpt in r.rcpt_tos)
    roles: dict[str, list[str]] = defaultdict(list)
    for action in scenario.actions:
        for official, role in action.targets:
            roles[official.email].append(
                f"{role} in {action.id}{'' if action.sendable else ' (' + action.state + ')'}"
            )
    lines = []
    for address in sorted(set(want) | set(have), key=lambda a: (a.split("@")[0][0], len(a), a)):
        if want[address] != have[address]:
            lines.append(
                f"    {address:<24} {want[address]:>4} → {have[address]:<4} ({'; '.join(roles[address])})"
            )
    return lines


def report(scenario: Scenario, outcome: Outcome, problems: Sequence[str], limit: int = 40) -> str:
    lines = [
        f"campaign seed={scenario.seed} ({scenario.kind}): {len(problems)} invariant(s) broken",
        f"  scenario: {scenario.describe()}",
        f"  outcome:  {outcome.line()}",
        f"  replay:   {scenario.replay()}",
    ]
    lines += [f"  - {p}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  … {len(problems) - limit} more")
    table = per_recipient(scenario, outcome)
    if table:
        lines.append("  letters per recipient, expected → got (mismatches only):")
        lines += table
    return "\n".join(lines)


def run_and_check(scenario: Scenario, root: Path, database_url: str) -> Outcome:
    """Run the campaign and assert every invariant, with the seed and a replay line on failure."""
    try:
        outcome = run_scenario(scenario, root, database_url)
    except AssertionError as exc:
        raise AssertionError(
            f"campaign seed={scenario.seed} ({scenario.kind}) could not run: {exc}\n"
            f"  scenario: {scenario.describe()}\n  replay:   {scenario.replay()}"
        ) from exc
    problems = check(scenario, outcome)
    assert not problems, report(scenario, outcome, problems)
    print(f"\n{scenario.describe()}\n  {outcome.line()}")  # for -s: what this scenario exercised
    return outcome
