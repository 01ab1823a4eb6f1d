"""End-to-end email throughput of the dispatcher, next to the machine's SMTP ceiling and a naive baseline.

usage: python bench/email_throughput.py [--n 20000] [--rounds 3] [--pools 8,16] [--procs 1,2]
       [--to-targets 1,4] [--profile]

One run, all traffic on 127.0.0.1:

1. starts ``smtp-sink -c -u nobody 127.0.0.1:PORT 256`` (postfix's sink, never the postfix daemon) under
   ``timeout`` and stops it by PID at the end, also on error or Ctrl-C;
2. ceiling: ``smtp-source -s 16 -d -m N -l 2000 ...`` into it, exactly as shared/peer-bench does (messages/s
   over the wall time of the smtp-source process);
3. naive baseline, as peer-bench's ``b.naive``: ONE thread, stdlib ``smtplib``, a NEW CONNECTION PER MESSAGE;
   unlike peer-bench it also renders each letter (plain Jinja2 from the same template files) and builds it
   as ``email.message.EmailMessage`` (policy=default) with the same headers and recipients. No durable log;
4. the dispatcher: ``dispatcher run --once`` as a subprocess on a fresh copy of an imported SQLite file, once
   per SMTP pool size (and per ``--procs`` count), for each campaign shape of ``--to-targets``: K ``to``
   targets + one ``cc``, N/K supporters (rounded), so every row sends about N letters; each shape has its
   own fixture dir and database. Wall time covers interpreter start, plan, render, send and the durable
   attempt log. Afterwards the SQLite file must show every delivery ``sent`` and one ``sent`` attempt row
   each, and smtp-sink's message counter must have grown by as many (supporters × K);
5. repeats all of it ``--rounds`` times (scenarios interleaved) and prints a markdown table; writes it and the
   raw figures as JSON to bench/results/ (git-ignored).

Every child runs under ``timeout(1)``; the temp dir is removed at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import hashlib
import io
import json
import os
import platform
import pstats
import random
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

HOST = "127.0.0.1"
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TEMPLATE_SRC = REPO / "templates" / "ua-61-21-update-1"
ACTION_ID = "bench-ua"
TEMPLATE_SET = "bench-letters"
LANGUAGES = ("zh-Hans", "en")
SENDER = "Letters (bench) <letters@example.org>"
MSG_LEN = 2000  # smtp-source -l, as in peer-bench

_children: set[subprocess.Popen[bytes]] = set()


def say(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, secs: float = 10.0) -> None:
    end = time.monotonic() + secs
    while time.monotonic() < end:
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {HOST}:{port} after {secs}s")


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the ``timeout`` wrapper by PID (it passes the signal on to its child), then SIGKILL."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
    _children.discard(proc)


@dataclass
class Run:
    rc: int
    wall: float
    rss_mb: float
    cpu: float  # user + system seconds of the whole tree
    out: str
    err: str


def measured_many(
    cmds: Sequence[Sequence[str]],
    limit: float,
    *,
    envs: Sequence[dict[str, str] | None],
    cwd: Path | None = None,
    logs: Path,
    tag: str,
) -> list[Run]:
    """Start every command at once, each under ``timeout``; per process: exit code, wall seconds from the
    common start to its exit, peak RSS (wait4 folds reaped children's maxrss into the ``timeout`` wrapper's)
    and CPU seconds (user + system, children included)."""
    procs: list[tuple[subprocess.Popen[bytes], Path, Path]] = []
    t0 = time.perf_counter()
    for k, (cmd, env) in enumerate(zip(cmds, envs, strict=True)):
        name = tag if len(cmds) == 1 else f"{tag}-p{k}"
        out_path, err_path = logs / f"{name}.out", logs / f"{name}.err"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(
                ["timeout", "-k", "5", f"{limit:.0f}", *cmd], stdout=out, stderr=err, env=env, cwd=cwd
            )
        _children.add(proc)
        procs.append((proc, out_path, err_path))
    runs = []
    for proc, out_path, err_path in procs:
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            _children.discard(proc)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        runs.append(
            Run(
                proc.returncode,
                wall,
                usage.ru_maxrss / 1024.0,
                usage.ru_utime + usage.ru_stime,
                out_path.read_text(errors="replace"),
                err_path.read_text(errors="replace"),
            )
        )
    return runs


def measured(
    cmd: Sequence[str],
    limit: float,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    logs: Path,
    tag: str,
) -> Run:
    """One command under ``timeout``: see ``measured_many``."""
    return measured_many([cmd], limit, envs=[env], cwd=cwd, logs=logs, tag=tag)[0]


def check(run: Run, what: str) -> None:
    if run.rc != 0:
        why = " (killed by timeout)" if run.rc in (124, 137) else ""
        raise RuntimeError(
            f"{what} failed, exit {run.rc}{why}\n--- stdout\n{run.out[-2000:]}\n--- stderr\n{run.err[-3000:]}"
        )


class Sink:
    """smtp-sink with running counters (-c) written to a file; bounded lifetime; stopped by PID."""

    def __init__(self, port: int, lifetime: float, logs: Path) -> None:
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        self.cmd = ["smtp-sink", "-c", *user, f"{HOST}:{port}", "256"]
        self.counter_file = logs / "smtp-sink.counters"
        self._out = self.counter_file.open("wb")
        self._err = (logs / "smtp-sink.err").open("wb")
        self.proc = subprocess.Popen(
            ["timeout", "-k", "5", f"{lifetime:.0f}", *self.cmd], stdout=self._out, stderr=self._err
        )
        _children.add(self.proc)
        try:
            wait_port(port)
        except RuntimeError:
            self.close()
            raise

    def messages(self) -> int | None:
        """Messages received so far (the last ``mesg=`` counter smtp-sink printed)."""
        with self.counter_file.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - 4096))
            found = re.findall(rb"mesg=(\d+)", fh.read())
        return int(found[-1]) if found else (0 if size == 0 else None)

    def settled_messages(self) -> int | None:
        """The counter once it has stopped moving (the sink prints it after each '.' and QUIT)."""
        last = self.messages()
        for _ in range(20):
            time.sleep(0.1)
            now = self.messages()
            if now == last:
                return now
            last = now
        return last

    def close(self) -> None:
        stop(self.proc)
        self._out.close()
        self._err.close()


# ---------------------------------------------------------------------------------------- fixtures
LATIN_FIRST = [
    "Zoë",
    "Amélie",
    "José",
    "Jonas",
    "Aoife",
    "Łukasz",
    "Søren",
    "Fatima",
    "Olivia",
    "Mateo",
    "Chloé",
    "Gulnar",
    "Dilnur",
    "Kemal",
    "Ingrid",
    "Priya",
]
LATIN_LAST = [
    "Dubois",
    "Weber",
    "García",
    "O'Brien",
    "Müller",
    "Kowalski",
    "Nørgaard",
    "Smith",
    "Okafor",
    "Rossi",
    "Tursun",
    "Yılmaz",
    "Lindqvist",
    "Nakamura",
]
CJK_SURNAME = ["王", "李", "张", "刘", "陈", "林", "黄", "周", "吴", "徐", "欧阳"]
CJK_GIVEN = ["芳", "小文", "伟", "静", "敏", "磊", "洋", "婷", "建华", "丽娟", "志强"]
PLACES = [
    ("Taipei", "TW", "zh-Hant"),
    ("Lyon", "FR", "fr"),
    ("Berlin", "DE", "de"),
    ("", "", "zh-Hans"),
    ("Zürich", "CH", "de"),
    ("London", "GB", "en"),
    ("Hong Kong", "HK", "zh-Hant"),
    ("", "", "en"),
]
OFFSETS = ["+08:00", "+02:00", "+00:00", "-05:00", "+05:30"]


def supporter_rows(n: int, seed: int = 61) -> Iterator[dict[str, str]]:
    rng = random.Random(seed)
    for i in range(n):
        city, country, language = PLACES[i % len(PLACES)]
        if i % 2:
            name = rng.choice(CJK_SURNAME) + rng.choice(CJK_GIVEN)
        else:
            name = f"{rng.choice(LATIN_FIRST)} {rng.choice(LATIN_LAST)}"
            if i % 10 == 4:
                name = f"{name.split()[1]}, {name.split()[0]}"  # a comma: must be quoted in headers
        day = dt.date(2025, 1, 1) + dt.timedelta(days=rng.randrange(300))
        yield {
            "email": f"supporter{i:07d}@example.net",
            "name": name,
            "language": language,
            "city": city,
            "country": country,
            "scope": ACTION_ID,
            "channels": "email",
            "consent_version": "bench",
            "opted_in_at": f"{day.isoformat()}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:00"
            f"{rng.choice(OFFSETS)}",
        }


def write_fixtures(root: Path, n: int, to_targets: int) -> dict[str, Path]:
    actions, templates = root / "actions", root / "templates" / TEMPLATE_SET
    actions.mkdir(parents=True)
    templates.mkdir(parents=True)
    for language in LANGUAGES:
        shutil.copy(TEMPLATE_SRC / f"{language}.j2", templates / f"{language}.j2")
    deadline = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).date().isoformat()
    lines = [
        f"id: {ACTION_ID}",
        "title: Bench - missing and arbitrarily detained in Xinjiang",
        "reference: UA 61/21",
        f"deadline: {deadline}",
        "timezone: UTC",
        "status: active",
        f"languages: [{', '.join(LANGUAGES)}]",
        f"template_set: {TEMPLATE_SET}",
        "targets:",
    ]
    for k in range(to_targets):
        # The first target reads Chinese; further ones alternate, so several targets mix the languages.
        langs = "zh-Hans, en" if k % 2 == 0 else "en, zh-Hans"
        lines += [
            f"  - id: official-{k + 1}",
            f"    name: Official {k + 1} (bench)",
            "    title: Bench recipient",
            "    role: to",
            f"    languages: [{langs}]",
            "    salutation:",
            f"      en: Dear Official {k + 1}",
            f"      zh-Hans: 尊敬的官员{k + 1}",
            f"    email: official-{k + 1}@example.org",
            "    address:",
            "      Latn: |-",
            "        Bench Office",
            "        1 Example Street",
            "    channels: [email]",
        ]
    lines += [
        "  - id: embassy-cc",
        "    name: Ambassador (bench)",
        "    title: Bench copy recipient",
        "    role: cc",
        "    languages: [zh-Hans, en]",
        "    salutation:",
        "      en: Dear Ambassador",
        "      zh-Hans: 尊敬的大使",
        "    email: ambassador@example.org",
        "    channels: [email]",
    ]
    (actions / f"{ACTION_ID}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    csv_path = root / "supporters.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        columns = "email,name,language,city,country,scope,channels,consent_version,opted_in_at"
        writer = csv.DictWriter(fh, fieldnames=columns.split(","))
        writer.writeheader()
        writer.writerows(supporter_rows(n))
    return {
        "actions": actions,
        "templates": root / "templates",
        "csv": csv_path,
        "action": actions / f"{ACTION_ID}.yaml",
    }


# ---------------------------------------------------------------------------------------- baseline worker
def baseline_worker(port: int, csv_path: Path, action_path: Path, templates: Path, n: int) -> None:
    """Naive pipeline, one thread: per letter Jinja2 render + EmailMessage + a new smtplib connection.

    The letter is the one the dispatcher sends for the first ``to`` target: same template files, same
    context fields, same From/Reply-To/To/Cc/Subject/Date/Message-ID headers, same two recipients.
    """
    import smtplib
    from email.headerregistry import Address
    from email.message import EmailMessage
    from email.utils import format_datetime, make_msgid
    from types import SimpleNamespace

    import jinja2
    import yaml
    from babel import Locale
    from babel.dates import format_date

    action = yaml.safe_load(action_path.read_text(encoding="utf-8"))
    target = next(t for t in action["targets"] if t["role"] == "to")
    copy = next(t for t in action["targets"] if t["role"] == "cc")
    language = target["languages"][0]
    # Plain-text letters, as in dispatcher/letters/render.py: no HTML, so no autoescape.
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        autoescape=False,  # noqa: S701
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    template = env.get_template(f"{action['template_set']}/{language}.j2")
    locale = Locale.parse(language.replace("-", "_"))
    today = format_date(dt.date.today(), format="long", locale=locale)
    action_view = SimpleNamespace(reference=action["reference"], title=action["title"])
    target_view = SimpleNamespace(
        name=target["name"], salutation=target["salutation"][language], title=target["title"], address=""
    )
    with csv_path.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[:n]
    org = Address("Letters (bench)", addr_spec="letters@example.org")

    t0 = time.perf_counter()
    sent = 0
    for row in rows:
        supporter = SimpleNamespace(
            name=row["name"],
            city=row["city"],
            country=row["country"],
            country_name=str(locale.territories.get(row["country"], "")),
            words="",
        )
        ctx = template.new_context(
            {
                "action": action_view,
                "target": target_view,
                "supporter": supporter,
                "language": language,
                "today": today,
            }
        )
        subject = " ".join("".join(template.blocks["subject"](ctx)).split())
        body = "".join(template.blocks["body"](ctx)).strip("\n") + "\n"
        msg = EmailMessage()
        msg["Message-ID"] = make_msgid(domain="example.org")
        msg["Date"] = format_datetime(dt.datetime.now(dt.UTC))
        msg["From"] = Address(row["name"], addr_spec=org.addr_spec)
        msg["Reply-To"] = Address(row["name"], addr_spec=row["email"])
        msg["To"] = Address(target["name"], addr_spec=target["email"])
        msg["Cc"] = Address(copy["name"], addr_spec=copy["email"])
        msg["Subject"] = subject
        msg["Content-Language"] = language
        msg.set_content(body)
        with smtplib.SMTP(HOST, port, local_hostname="bench.invalid", timeout=10) as smtp:
            smtp.send_message(msg)
        sent += 1
    secs = time.perf_counter() - t0
    print(
        json.dumps({"n": sent, "secs": secs, "rate": sent / secs, "threads": 1, "language": language}),
        flush=True,
    )


def transport_worker(port: int, n: int) -> None:
    """peer-bench's ``b.naive`` as is: a prebuilt ~2 KB message, one thread, a new connection per message."""
    import smtplib

    line = b"x" * 76 + b"\r\n"
    body = (line * (MSG_LEN // len(line) + 1))[:MSG_LEN]
    msg = (
        b"From: sender@bench.invalid\r\nTo: rcpt@bench.invalid\r\nSubject: bench\r\n"
        b"Message-ID: <bench.0@bench.invalid>\r\n\r\n" + body
    )
    t0 = time.perf_counter()
    for i in range(n):
        smtp = smtplib.SMTP(HOST, port, local_hostname="bench.invalid", timeout=10)
        smtp.sendmail("sender@bench.invalid", [f"r{i}@bench.invalid"], msg)
        smtp.quit()
    secs = time.perf_counter() - t0
    print(json.dumps({"n": n, "secs": secs, "rate": n / secs, "threads": 1}), flush=True)


# ---------------------------------------------------------------------------------------- scenarios
@dataclass
class Sample:
    round: int
    rate: float
    wall: float
    rss_mb: float | None = None
    received: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Scenario:
    key: str
    label: str
    samples: list[Sample] = field(default_factory=list)
    letters: int | None = None  # letters per run of a dispatcher row (its shape's supporters × to targets)


@dataclass
class Shape:
    """One campaign shape: ``to_targets`` ``to`` targets + one ``cc``, in its own fixture dir and database."""

    to_targets: int
    supporters: int
    root: Path
    files: dict[str, Path] = field(default_factory=dict)
    import_secs: float = float("nan")

    @property
    def letters(self) -> int:
        return self.supporters * self.to_targets

    @property
    def label(self) -> str:
        return f"{self.to_targets} to + 1 cc"

    @property
    def tag(self) -> str:
        return f"t{self.to_targets}"

    @property
    def base_db(self) -> Path:
        return self.root / "base.db"


class Bench:
    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args = args
        self.n: int = args.n
        self.n_baseline: int = args.n_baseline or args.n
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir()
        self.dispatcher_bin = args.dispatcher
        # Every shape sends about n letters per run: supporters = n / to targets, rounded half up.
        self.shapes = [Shape(k, max(1, (2 * self.n + k) // (2 * k)), root / f"t{k}") for k in args.to_targets]
        # The naive baseline keeps the 1-target shape (one `to` + one `cc`), in a dir of its own.
        self.baseline_root = root / "baseline"
        self.limit_ceiling = 60 + self.n / 1000
        self.limit_baseline = 60 + self.n_baseline / 50
        self.limit_dispatcher = 60 + max(shape.letters for shape in self.shapes) / 50
        self.limit_import = 60 + max(shape.supporters for shape in self.shapes) / 200
        runs = len(self.shapes) * (len(args.pools) + sum(1 for p in args.procs if p > 1)) + 1
        per_round = self.limit_ceiling + 2 * self.limit_baseline + runs * self.limit_dispatcher
        self.sink_lifetime = (
            args.rounds * per_round + len(self.shapes) * self.limit_import + 3 * self.limit_dispatcher + 120
        )
        self.scenarios: dict[str, Scenario] = {}
        self.commands: dict[str, str] = {}
        self.notes: list[str] = []
        self.port = 0
        self.sink: Sink | None = None
        self.load_before = loadavg()
        # Others edit dispatcher/ while this runs: measure a copy taken now, so every run in this bench
        # measures the same code (PYTHONPATH puts it ahead of the editable install).
        self.snapshot: Path | None = None if args.live else root / "src"
        self.code_start = code_state(REPO / "dispatcher")

    # helpers ------------------------------------------------------------------------------------
    def env(self, db: Path, pool: int, shape: Shape) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
        env.update(
            {
                "DISPATCHER_SETTINGS": str(self.root / "no-settings-file.toml"),
                "DISPATCHER_DATABASE_URL": f"sqlite:///{db}",
                "DISPATCHER_ACTIONS_DIR": str(shape.files["actions"]),
                "DISPATCHER_TEMPLATES_DIR": str(shape.files["templates"]),
                "DISPATCHER_OUTBOX": str(self.root / "outbox"),
                "DISPATCHER_SMTP_URL": f"smtp://{HOST}:{self.port}",
                "DISPATCHER_SMTP_POOL": str(pool),
                "DISPATCHER_RATE_PER_TARGET": "1000000000",
                "DISPATCHER_BURST_PER_TARGET": "1000000000",
                "DISPATCHER_RATE_GLOBAL": "1000000000",
                # Caps per recipient and domain lifted with pacing (older snapshots ignore them).
                "DISPATCHER_MAX_PER_HOUR": "none",
                "DISPATCHER_MAX_PER_DAY": "none",
                "DISPATCHER_DOMAIN_MAX_PER_HOUR": "none",
                # Not spread to the actions' deadlines (the default): as fast as it goes.
                "DISPATCHER_SPREAD": "asap",
                "DISPATCHER_FROM": SENDER,
            }
        )
        if self.snapshot is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(self.snapshot), *filter(None, [env.get("PYTHONPATH")])])
        return env

    def take_snapshot(self) -> None:
        if self.snapshot is None:
            return
        shutil.copytree(
            REPO / "dispatcher", self.snapshot / "dispatcher", ignore=shutil.ignore_patterns("__pycache__")
        )
        self.code_start = code_state(self.snapshot / "dispatcher")
        env = self.env(self.root / "unused.db", 8, self.shapes[0])
        probe = "import dispatcher.cli; print(dispatcher.cli.__file__)"
        found = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60, cwd=self.root
        )
        where = found.stdout.strip()
        if found.returncode != 0 or not where.startswith(str(self.snapshot)):
            raise RuntimeError(f"the dispatcher snapshot is not what gets imported: {where!r} {found.stderr}")

    def record(self, key: str, label: str, sample: Sample, letters: int | None = None) -> None:
        self.scenarios.setdefault(key, Scenario(key, label, letters=letters)).samples.append(sample)

    def received_since(self, before: int | None) -> int | None:
        assert self.sink is not None
        after = self.sink.settled_messages()
        return None if before is None or after is None else after - before

    # setup ----------------------------------------------------------------------------------------
    def setup(self) -> None:
        for shape in self.shapes:
            shape.files = write_fixtures(shape.root, shape.supporters, shape.to_targets)
        write_fixtures(self.baseline_root, self.n_baseline, 1)
        self.take_snapshot()
        self.port = free_port()
        self.sink = Sink(self.port, self.sink_lifetime, self.logs)
        self.commands["sink"] = " ".join(self.sink.cmd) + f"  (under timeout {self.sink_lifetime:.0f}s)"
        say(f"smtp-sink on {HOST}:{self.port}, pid {self.sink.proc.pid} (timeout wrapper)")
        for shape in self.shapes:
            cmd = [self.dispatcher_bin, "supporters", "import", str(shape.files["csv"])]
            self.commands["import"] = shlex.join(cmd).replace(str(shape.root), "<tmp>/<shape>")
            run = measured(
                cmd,
                self.limit_import,
                env=self.env(shape.base_db, 8, shape),
                cwd=shape.root,
                logs=self.logs,
                tag=f"{shape.tag}-import",
            )
            check(run, f"dispatcher supporters import ({shape.label})")
            if f"imported {shape.supporters} supporters" not in run.out:
                raise RuntimeError(f"import did not report {shape.supporters} supporters: {run.out!r}")
            shape.import_secs = run.wall
            say(
                f"{shape.label}: imported {shape.supporters} supporters in {run.wall:.1f}s "
                f"({shape.supporters / run.wall:,.0f} rows/s), {shape.letters} letters per run"
            )
        # An empty store with the first shape's action: `run --once` on it is the fixed cost (start,
        # imports, checks).
        self.empty_db = self.root / "empty.db"
        check(
            measured(
                [self.dispatcher_bin, "db", "upgrade"],
                60,
                env=self.env(self.empty_db, 8, self.shapes[0]),
                cwd=self.shapes[0].root,
                logs=self.logs,
                tag="empty-upgrade",
            ),
            "dispatcher db upgrade",
        )

    # scenarios ------------------------------------------------------------------------------------
    def ceiling(self, r: int) -> float:
        cmd = [
            "smtp-source",
            "-s",
            "16",
            "-d",
            "-m",
            str(self.n),
            "-l",
            str(MSG_LEN),
            "-M",
            "bench.invalid",
            "-f",
            "sender@bench.invalid",
            "-t",
            "rcpt@bench.invalid",
            f"{HOST}:{self.port}",
        ]
        self.commands["ceiling"] = shlex.join(cmd)
        assert self.sink is not None
        before = self.sink.settled_messages()
        run = measured(cmd, self.limit_ceiling, logs=self.logs, tag=f"r{r}-ceiling")
        check(run, "smtp-source")
        rate = self.n / run.wall
        self.record(
            "ceiling",
            "ceiling: smtp-source -s 16 -d -> smtp-sink",
            Sample(r, rate, run.wall, None, self.received_since(before)),
        )
        return rate

    def baseline(self, r: int, mode: str = "letters") -> float:
        """mode ``letters``: the naive baseline proper; ``transport``: peer-bench's b.naive, for context."""
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker-baseline",
            mode,
            "--port",
            str(self.port),
            "--n",
            str(self.n_baseline),
            "--root",
            str(self.baseline_root),
        ]
        key = "baseline" if mode == "letters" else "naive-transport"
        self.commands[key] = shlex.join(cmd)
        assert self.sink is not None
        before = self.sink.settled_messages()
        run = measured(cmd, self.limit_baseline, logs=self.logs, tag=f"r{r}-{key}")
        check(run, f"{key} worker")
        d = json.loads(run.out.strip().splitlines()[-1])
        if d["n"] != self.n_baseline:
            raise RuntimeError(f"{key} sent {d['n']} of {self.n_baseline}")
        received = self.received_since(before)
        if received is not None and received != self.n_baseline:
            raise RuntimeError(f"smtp-sink counted {received} messages from {key}, not {self.n_baseline}")
        label = (
            "naive baseline: 1 thread, Jinja2 + EmailMessage + smtplib, new connection per letter"
            if mode == "letters"
            else "naive transport only (peer-bench b.naive): prebuilt 2 KB, smtplib, new connection per msg"
        )
        self.record(key, label, Sample(r, d["rate"], d["secs"], run.rss_mb, received, d))
        return float(d["rate"])

    def dispatcher(self, r: int, shape: Shape, pool: int, procs: int = 1) -> Sample:
        """``procs`` processes of ``dispatcher run --once`` (distinct worker ids) on one fresh copy of the
        shape's SQLite file."""
        key = f"dispatcher-{shape.tag}-pool{pool}" + (f"-x{procs}" if procs > 1 else "")
        expected = shape.letters
        db = shape.root / f"r{r}-{key}.db"
        shutil.copy(shape.base_db, db)
        cmds = [
            [self.dispatcher_bin, "run", "--once"]
            if procs == 1
            else [self.dispatcher_bin, "run", "--once", "--worker-id", f"bench-{k}"]
            for k in range(procs)
        ]
        self.commands[key] = " & ".join(shlex.join(c) for c in cmds)
        assert self.sink is not None
        before = self.sink.settled_messages()
        runs = measured_many(
            cmds,
            self.limit_dispatcher,
            envs=[self.env(db, pool, shape)] * procs,
            cwd=shape.root,
            logs=self.logs,
            tag=f"r{r}-{key}",
        )
        for run in runs:
            check(run, f"dispatcher run --once ({shape.label}, pool {pool}, {procs} process(es))")
        received = self.received_since(before)
        counts = verify_store(db, expected)
        if received is not None and received != expected:
            raise RuntimeError(
                f"{shape.label}: smtp-sink counted {received} messages, the store says {expected} sent"
            )
        tallies = [
            re.findall(r"sent (\d+) · retry (\d+) · failed (\d+) · (\d+) letters/s", run.err) for run in runs
        ]
        if not all(tallies) or sum(int(t[-1][0]) for t in tallies) != expected:
            raise RuntimeError(f"dispatchers' tallies do not add up to {expected} sent: {tallies}")
        wall = max(run.wall for run in runs)
        rate = expected / wall
        extra = {
            "tally_rate": sum(int(t[-1][3]) for t in tallies),
            "cpu_s": sum(run.cpu for run in runs),
            "per_process_sent": [int(t[-1][0]) for t in tallies],
            "store": counts,
        }
        label = (
            f"{shape.label}: dispatcher run --once, SMTP_POOL={pool} (plan+render+send+log, wall incl. start)"
        )
        if procs > 1:
            label = (
                f"{shape.label}: {procs} × dispatcher run --once on one SQLite file, SMTP_POOL={pool} each"
            )
        sample = Sample(r, rate, wall, max(run.rss_mb for run in runs), received, extra)
        self.record(key, label, sample, expected)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        return sample

    def fixed_cost(self, r: int) -> None:
        db = self.root / "empty-run.db"
        shutil.copy(self.empty_db, db)
        run = measured(
            [self.dispatcher_bin, "run", "--once"],
            120,
            env=self.env(db, 8, self.shapes[0]),
            cwd=self.shapes[0].root,
            logs=self.logs,
            tag=f"r{r}-fixed",
        )
        check(run, "dispatcher run --once on an empty store")
        self.record(
            "fixed",
            "dispatcher run --once with no supporters (fixed cost, s)",
            Sample(r, float("nan"), run.wall, run.rss_mb, None, {"cpu_s": run.cpu}),
        )

    def one_round(self, r: int) -> None:
        say(f"--- round {r + 1}/{self.args.rounds}")
        rate = self.ceiling(r)
        say(f"  ceiling              {rate:9,.0f} msg/s")
        rate = self.baseline(r, "transport")
        say(f"  naive transport only {rate:9,.0f} msg/s")
        rate = self.baseline(r)
        say(f"  naive baseline       {rate:9,.0f} letters/s")
        runs = [(pool, 1) for pool in self.args.pools]
        runs += [(self.args.pools[0], procs) for procs in self.args.procs if procs > 1]
        # Shapes side by side: each pool size / process count runs every shape before the next one.
        for pool, procs in runs:
            for shape in self.shapes:
                s = self.dispatcher(r, shape, pool, procs)
                say(
                    f"  {shape.label:<11} pool {pool:<3} ×{procs} {s.rate:9,.0f} letters/s  (wall "
                    f"{s.wall:.2f}s, CPU {s.extra['cpu_s']:.2f}s, own tally {s.extra['tally_rate']}/s, "
                    f"peak RSS {s.rss_mb:.0f} MB, sink got {s.received})"
                )
        self.fixed_cost(r)
        say(f"  fixed cost of run --once: {self.scenarios['fixed'].samples[-1].wall:.2f}s")

    def profile(self) -> str:
        """One more dispatcher run (first pool size, first shape) under py-spy (sampling, only threads holding
        the GIL) if it is installed next to this python, else under cProfile; the top functions as text."""
        pool, shape = self.args.pools[0], self.shapes[0]
        db = shape.root / "profile.db"
        shutil.copy(shape.base_db, db)
        self.args.out.mkdir(parents=True, exist_ok=True)
        spy = Path(sys.executable).parent / "py-spy"
        if spy.exists():
            out = self.args.out / "dispatcher.pyspy.txt"
            cmd = [
                str(spy),
                "record",
                "--gil",
                "--threads",
                "-r",
                "250",
                "-f",
                "raw",
                "-o",
                str(out),
                "--",
                self.dispatcher_bin,
                "run",
                "--once",
            ]
        else:
            out = self.args.out / "dispatcher.prof"
            cmd = [sys.executable, "-m", "cProfile", "-o", str(out), self.dispatcher_bin, "run", "--once"]
        self.commands["profile"] = shlex.join(cmd)
        run = measured(
            cmd,
            3 * self.limit_dispatcher,
            env=self.env(db, pool, shape),
            cwd=shape.root,
            logs=self.logs,
            tag="profile",
        )
        check(run, "dispatcher under a profiler")
        verify_store(db, shape.letters)
        tool = "py-spy --gil" if spy.exists() else "cProfile"
        head = (
            f"{tool} of `dispatcher run --once`, {shape.label}, {shape.letters:,} letters, pool {pool}: wall "
            f"{run.wall:.1f}s with the profiler, CPU {run.cpu:.1f}s; raw data in {out}\n"
        )
        if spy.exists():
            return head + top_of_collapsed(out)
        text = io.StringIO()
        stats = pstats.Stats(str(out), stream=text)
        stats.strip_dirs().sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(40)
        return head + text.getvalue()


def top_of_collapsed(path: Path, n_self: int = 25, n_incl: int = 45) -> str:
    """Self and inclusive shares per function from py-spy's raw (collapsed stacks) output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    if not total:
        return "(no samples)\n"
    lines = [f"{total} samples of threads holding the GIL (250 Hz)", "self:"]
    lines += [f"  {100 * c / total:5.1f}%  {f}" for f, c in own.most_common(n_self)]
    lines.append("inclusive (frames of the dispatcher, aiosmtplib, jinja2, sqlalchemy and threads):")
    interesting = re.compile(r"^thread|dispatcher/|aiosmtplib/|jinja2/|sqlalchemy/engine/base|parseaddr")
    picked = [(f, c) for f, c in inclusive.most_common() if interesting.search(f)][:n_incl]
    lines += [f"  {100 * c / total:5.1f}%  {f}" for f, c in picked]
    return "\n".join(lines) + "\n"


def verify_store(db: Path, expected: int) -> dict[str, Any]:
    """Every delivery sent and exactly one 'sent' attempt row for each, straight from the SQLite file."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        deliveries = dict(con.execute("SELECT status, count(*) FROM deliveries GROUP BY status").fetchall())
        attempts = dict(con.execute("SELECT outcome, count(*) FROM attempts GROUP BY outcome").fetchall())
        distinct = con.execute(
            "SELECT count(DISTINCT delivery_id) FROM attempts WHERE outcome = 'sent'"
        ).fetchone()[0]
        languages = dict(
            con.execute("SELECT language, count(*) FROM deliveries GROUP BY language").fetchall()
        )
    finally:
        con.close()
    counts = {"deliveries": deliveries, "attempts": attempts, "languages": languages}
    if deliveries != {"sent": expected} or attempts != {"sent": expected} or distinct != expected:
        raise RuntimeError(
            f"{db}: expected {expected} sent deliveries with one sent attempt each, found "
            f"{counts} ({distinct} distinct deliveries in the attempt log)"
        )
    return counts


# ---------------------------------------------------------------------------------------- report
def fmt(x: float) -> str:
    return f"{x:,.0f}"


def per_round(s: Scenario, other: Scenario | None) -> list[float]:
    if other is None:
        return []
    by_round = {o.round: o.rate for o in other.samples}
    return [x.rate / by_round[x.round] for x in s.samples if x.round in by_round]


def report(bench: Bench, argv: list[str], started: float, profile: str | None) -> tuple[str, dict[str, Any]]:
    sc = bench.scenarios
    ceiling, baseline = sc.get("ceiling"), sc.get("baseline")
    lines = [
        "| scenario | letters | median letters/s | min–max | × ceiling | × baseline | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows = []
    for key, s in sc.items():
        if key == "fixed":
            continue
        rates = [x.rate for x in s.samples]
        vs_ceiling, vs_baseline = per_round(s, ceiling), per_round(s, baseline)
        rss = [x.rss_mb for x in s.samples if x.rss_mb is not None]
        n = bench.n_baseline if key in ("baseline", "naive-transport") else bench.n
        n = s.letters if s.letters is not None else n
        median = statistics.median(rates)
        x_ceiling = statistics.median(vs_ceiling) if vs_ceiling else None
        x_baseline = statistics.median(vs_baseline) if vs_baseline else None
        peak = max(rss) if rss else None
        rows.append(
            {
                "key": key,
                "label": s.label,
                "n": n,
                "median": median,
                "min": min(rates),
                "max": max(rates),
                "x_ceiling": x_ceiling,
                "x_baseline": x_baseline,
                "peak_rss_mb": peak,
            }
        )
        lines.append(
            f"| {s.label} | {n:,} | {fmt(median)} | {fmt(min(rates))}–{fmt(max(rates))} | "
            f"{'' if x_ceiling is None else format(x_ceiling, '.3f')} | "
            f"{'' if x_baseline is None else format(x_baseline, '.2f')} | "
            f"{'' if peak is None else format(peak, '.0f')} |"
        )
    lines.append("")
    lines.append(
        "× ceiling and × baseline are medians of per-round ratios (each round runs every scenario "
        "in turn). The ceiling and transport-only rows count 2 KB messages with one recipient."
    )
    for key, s in sc.items():
        if key.startswith("dispatcher"):
            tallies = [x.extra["tally_rate"] for x in s.samples]
            walls = [x.wall for x in s.samples]
            cpu = statistics.median(x.extra["cpu_s"] for x in s.samples)
            share = cpu / statistics.median(walls)
            letters = s.letters or bench.n
            lines.append(
                f"- {key}: wall {min(walls):.2f}–{max(walls):.2f}s; CPU (user+sys) median {cpu:.2f}s"
                f" = {cpu / letters * 1e6:,.0f} µs/letter, {share:.0%} of one core; the "
                f"dispatcher's own tally line (from Dispatcher() to the end, no interpreter start) "
                f"median {statistics.median(tallies):,} letters/s; smtp-sink counted "
                f"{[x.received for x in s.samples]} messages"
            )
    if "fixed" in sc:
        fixed = [x.wall for x in sc["fixed"].samples]
        lines.append(
            f"- fixed cost of `dispatcher run --once` on a store with no supporters (interpreter, "
            f"imports, migration check, action check): median {statistics.median(fixed):.2f}s"
        )
    if baseline:
        lines.append(
            f"- baseline letters are in {baseline.samples[0].extra.get('language')}, as the "
            f"dispatcher's to the first `to` target; smtp-sink counted "
            f"{[x.received for x in baseline.samples]}"
        )
    if ceiling:
        lines.append(f"- ceiling: smtp-sink counted {[x.received for x in ceiling.samples]}")
    transport = sc.get("naive-transport")
    if transport:
        lines.append(f"- naive transport only: smtp-sink counted {[x.received for x in transport.samples]}")
    for shape in bench.shapes:
        lines.append(
            f"- {shape.label}: {shape.supporters:,} supporters × {shape.to_targets} = {shape.letters:,} "
            f"letters per run; supporters import (`dispatcher supporters import`, once, own fixture dir "
            f"and database): {shape.import_secs:.1f}s, {shape.supporters / shape.import_secs:,.0f} rows/s"
        )
    lines += bench.notes
    lines += ["", "command: `" + shlex.join([sys.executable, sys.argv[0], *argv]) + "`"]
    for name, cmd in bench.commands.items():
        if name != "profile":
            lines.append(f"- {name}: `{cmd}`")
    shape = bench.shapes[0]
    env = bench.env(shape.root / "<run>.db", 0, shape)
    shown = " ".join(
        f"{k}={shlex.quote(v.replace(str(shape.root), '<tmp>/<shape>').replace(str(bench.root), '<tmp>'))}"
        for k, v in sorted(env.items())
        if k.startswith("DISPATCHER_") and k != "DISPATCHER_SMTP_POOL"
    )
    lines.append(
        f"- dispatcher environment: `{shown}` DISPATCHER_SMTP_POOL=<pool>, cwd <tmp>/<shape> "
        f"(<shape> = {', '.join(s.tag for s in bench.shapes)})"
    )
    code_end = code_state(REPO / "dispatcher")
    lines.append(
        f"- {os.cpu_count()} CPUs, load before {bench.load_before}, after {loadavg()}; python "
        f"{platform.python_version()}; total {time.perf_counter() - started:.0f}s"
    )
    taken = "a copy taken at the start (PYTHONPATH)" if bench.snapshot else "the live tree"
    lines.append(f"- code measured: {taken}: {bench.code_start}")
    if code_end.rpartition(" ")[2] != bench.code_start.rpartition(" ")[2]:
        if bench.snapshot:
            lines.append(f"- the repo's dispatcher/ changed during the run (not measured): {code_end}")
        else:
            lines.append(f"- WARNING: dispatcher/ changed during the run; at the end: {code_end}")
    elif code_end != bench.code_start:
        lines.append(f"- (same dispatcher/ sources at the end, now {code_end})")
    table = "\n".join(lines)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(bench.args).items()}
    data = {
        "argv": argv,
        "config": config,
        "commands": bench.commands,
        "shapes": [
            {
                "to_targets": s.to_targets,
                "supporters": s.supporters,
                "letters": s.letters,
                "import_secs": s.import_secs,
            }
            for s in bench.shapes
        ],
        "rows": rows,
        "samples": {k: [asdict(x) for x in s.samples] for k, s in sc.items()},
        "cpus": os.cpu_count(),
        "load_before": bench.load_before,
        "load_after": loadavg(),
        "code_start": bench.code_start,
        "code_end": code_end,
        "profile": profile,
    }
    return table, data


def code_state(sources: Path) -> str:
    """HEAD, whether the repo's dispatcher/ differs from it, and a hash of the ``sources`` tree."""
    digest = hashlib.sha256()
    for path in sorted(sources.rglob("*.py")):
        digest.update(str(path.relative_to(sources)).encode() + b"\0" + path.read_bytes())

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10
        ).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "dispatcher")
    except (OSError, subprocess.TimeoutExpired):
        head, dirty = "?", ""
    return (
        f"git {head}{' + uncommitted changes in dispatcher/' if dirty else ''}, dispatcher/ sha256 "
        f"{digest.hexdigest()[:12]}"
    )


def loadavg() -> str:
    path = Path("/proc/loadavg")
    return " ".join(path.read_text().split()[:3]) if path.exists() else "?"


# ---------------------------------------------------------------------------------------- main
def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument(
        "--n",
        type=int,
        default=20000,
        help="letters per run (default 20000); each shape imports n / to-targets supporters, rounded",
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--pools", default="8,16", help="DISPATCHER_SMTP_POOL values, comma-separated")
    p.add_argument(
        "--procs",
        default="1",
        help="also run N dispatcher processes at once on one SQLite file "
        "(with the first pool size), e.g. 1,2",
    )
    p.add_argument("--n-baseline", type=int, default=0, help="letters for the naive baseline (default: --n)")
    p.add_argument(
        "--to-targets",
        default="1",
        help="campaign shapes, comma-separated, e.g. 1,4: 'to' targets per action (each gets a letter; "
        "plus one cc), each shape in its own fixture dir and database",
    )
    p.add_argument(
        "--dispatcher",
        default=str(Path(sys.executable).parent / "dispatcher"),
        help="the dispatcher console script (default: next to this python)",
    )
    p.add_argument("--profile", action="store_true", help="also run the dispatcher once under cProfile")
    p.add_argument(
        "--live",
        action="store_true",
        help="measure the live dispatcher/ tree, not a copy taken "
        "at the start (others may edit it during the run)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temp dir (databases, logs)")
    p.add_argument("--out", type=Path, default=HERE / "results")
    # internal: the baseline worker process
    p.add_argument("--worker-baseline", choices=["letters", "transport"], help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.pools = [int(x) for x in str(args.pools).split(",") if x.strip()]
    args.procs = [int(x) for x in str(args.procs).split(",") if x.strip()]
    # Shapes in the order given, each once.
    args.to_targets = list(dict.fromkeys(int(x) for x in str(args.to_targets).split(",") if x.strip()))
    if not args.to_targets or min(args.to_targets) < 1:
        p.error("--to-targets: one or more counts >= 1, comma-separated")
    if not args.pools or min(args.pools) < 1:
        p.error("--pools: one or more pool sizes >= 1, comma-separated")
    return args


def _raise_exit(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker_baseline == "transport":
        transport_worker(args.port, args.n)
        return 0
    if args.worker_baseline:
        root: Path = args.root
        baseline_worker(
            args.port,
            root / "supporters.csv",
            root / "actions" / f"{ACTION_ID}.yaml",
            root / "templates",
            args.n,
        )
        return 0
    for tool in ("smtp-sink", "smtp-source", "timeout"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found (apt-get install -y postfix; never start the postfix daemon)")
    if not Path(args.dispatcher).exists():
        sys.exit(f"no dispatcher at {args.dispatcher}: run with the venv's python or pass --dispatcher")
    signal.signal(signal.SIGTERM, _raise_exit)
    signal.signal(signal.SIGHUP, _raise_exit)
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="email-bench-"))
    say(
        f"temp dir {root}; n={args.n} rounds={args.rounds} pools={args.pools} procs={args.procs} "
        f"to-targets={args.to_targets}"
    )
    bench = Bench(args, root)
    out: TextIO = sys.stdout
    try:
        bench.setup()
        for r in range(args.rounds):
            bench.one_round(r)
        profile = bench.profile() if args.profile else None
        table, data = report(bench, argv, started, profile)
    finally:
        for proc in list(_children):
            if bench.sink is None or proc is not bench.sink.proc:
                stop(proc)
        if bench.sink is not None:
            bench.sink.close()
            say(f"smtp-sink stopped (pid {bench.sink.proc.pid})")
        if args.keep:
            say(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for name in (f"email_throughput-{stamp}", "email_throughput-latest"):
        (args.out / f"{name}.md").write_text(
            table + "\n" + (f"\n```\n{profile}\n```\n" if profile else ""), encoding="utf-8"
        )
        (args.out / f"{name}.json").write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    print(table, file=out)
    if profile:
        print("\n" + profile, file=out)
    say(f"written to {args.out}/email_throughput-{stamp}.{{md,json}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
