"""The claim at scale: letters/s as the same letters spread over more actions, and one claim round's time.

usage: python bench/claim_scale.py [--letters 12000] [--actions 1,100,300] [--runs 3]
       [--round-shape 300x3] [--rounds 15] [--room 200] [--db sqlite,postgresql] [--skip-send]

1. **Letters/s per shape**: for each count A of ``--actions``, A active actions with two ``to``
   targets each (every target its own address, so its own pacing bucket), and the same number of
   letters in all (``--letters``/(2 A) supporters per action, each consenting to one action by
   email). ``dispatcher supporters import`` fills one SQLite file per shape; each run copies it
   and runs ``dispatcher run --once`` (one worker, pacing lifted: rate, burst and global rate
   10⁹) with no SMTP URL, so letters go to the local Maildir outbox: no network and no other
   process, only the claim, rendering and the send log. The rate is taken from the first letter
   written to the last (Maildir file names carry the time): the send phase, without start-up and
   planning. Every run must leave every delivery ``sent``. Shapes run interleaved, ``--runs`` times.
2. **One claim round** (``--round-shape`` actions × targets, 20 supporters per action, so every
   group has 20 letters due), in this process against the store: ``Store.claim`` with every group
   asked, ``--room`` letters of room, pacing lifted, the default caps in force (30 an hour and 300
   a day per address, 120 an hour per domain; each action's officials at a domain of their own).
   Each round claims letters not claimed before, as a running worker does (putting the same
   letters back each round left PostgreSQL updating rows it had just updated, at twice the cost),
   and asks the groups from the first one the round before did not reach (``ClaimBatch.reached``;
   a version without it is asked every group each round). Median of ``--rounds``, on SQLite (a
   file) and PostgreSQL (a database
   ``dispatcher_claim_bench`` created and dropped through the local server, and ANALYZEd as
   autovacuum would soon do). A second figure has only a tenth of the groups with letters due
   (the rest planned for an hour later): idle groups. The database time is the time spent in the
   driver's execute calls (psycopg fetches every row there; SQLite steps its first row there);
   the whole call adds building statements and handling rows in Python.

Run it with the venv's python (it uses the ``dispatcher`` next to it and the ``dispatcher`` package
it imports). The temp dir is removed at the end.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import re
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dispatcher.models import ClaimGroup
    from dispatcher.store import Store

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE.parent / "templates" / "ua-61-21-update-1"
LIFTED = "1000000000"
PG_DB = "dispatcher_claim_bench"
LETTERS = 20  # per group of the claim-round store: more than the rounds take from any group
CODE = ""  # --code: a directory holding the ``dispatcher`` package to measure (e.g. an export of main)


def say(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------- fixtures
def action_yaml(action_id: str, targets: int) -> str:
    lines = [
        f"id: {action_id}",
        f"title: Bench action {action_id}",
        "deadline: 2035-12-31",
        "timezone: UTC",
        "status: active",
        "languages: [en]",
        "template_set: bench-letters",
        "targets:",
    ]
    for k in range(targets):
        lines += [
            f"  - id: official-{k + 1}",
            f"    name: Official {k + 1}",
            "    role: to",
            "    languages: [en]",
            f"    salutation: {{en: Dear Official {k + 1}}}",
            f"    email: {action_id}-official-{k + 1}@example.org",
            "    channels: [email]",
        ]
    return "\n".join(lines) + "\n"


def supporter_rows(actions: int, per_action: int) -> Iterator[dict[str, str]]:
    for a in range(actions):
        for i in range(per_action):
            yield {
                "email": f"s{a:04d}-{i:06d}@example.net",
                "name": f"Supporter {a}-{i}",
                "language": "en",
                "city": "Town",
                "country": "GB",
                "scope": f"bench-{a:04d}",
                "channels": "email",
                "consent_version": "bench",
                "opted_in_at": "2025-06-01T12:00:00+00:00",
            }


def write_shape(root: Path, actions: int, targets: int, per_action: int) -> Path:
    """Action files, templates and the supporters' CSV of one shape under ``root``."""
    (root / "actions").mkdir(parents=True)
    shutil.copytree(TEMPLATES, root / "templates" / "bench-letters")
    for a in range(actions):
        (root / "actions" / f"bench-{a:04d}.yaml").write_text(action_yaml(f"bench-{a:04d}", targets))
    with (root / "supporters.csv").open("w", newline="", encoding="utf-8") as fh:
        rows = list(supporter_rows(actions, per_action))
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def env_for(root: Path, db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    if CODE:  # the code measured, ahead of the installed one
        env["PYTHONPATH"] = os.pathsep.join([CODE, *filter(None, [env.get("PYTHONPATH")])])
    env.update(
        {
            "DISPATCHER_SETTINGS": str(root / "no-settings-file.toml"),
            "DISPATCHER_DATABASE_URL": f"sqlite:///{db}",
            "DISPATCHER_ACTIONS_DIR": str(root / "actions"),
            "DISPATCHER_TEMPLATES_DIR": str(root / "templates"),
            "DISPATCHER_OUTBOX": str(root / "outbox"),
            "DISPATCHER_RATE_PER_TARGET": LIFTED,
            "DISPATCHER_BURST_PER_TARGET": LIFTED,
            "DISPATCHER_RATE_GLOBAL": LIFTED,
            # Lifted too: the caps and the spread to the deadline (the default) would pace the letters.
            "DISPATCHER_MAX_PER_HOUR": "none",
            "DISPATCHER_MAX_PER_DAY": "none",
            "DISPATCHER_DOMAIN_MAX_PER_HOUR": "none",
            "DISPATCHER_SPREAD": "asap",
        }
    )
    return env


# ---------------------------------------------------------------------------------------- letters/s
def dispatcher_bin() -> str:
    return str(Path(sys.executable).with_name("dispatcher"))


def prepare(root: Path, actions: int, letters: int) -> Path:
    per_action = letters // (2 * actions)
    write_shape(root, actions, 2, per_action)
    base = root / "base.db"
    subprocess.run(
        [dispatcher_bin(), "supporters", "import", str(root / "supporters.csv")],
        env=env_for(root, base),
        check=True,
        capture_output=True,
        timeout=600,
    )
    return base


def send_once(root: Path, base: Path, run: int, letters: int, limit: float) -> tuple[float, bool]:
    """One ``dispatcher run --once`` on a fresh copy of the shape's file: its letters/s, and
    whether it was cut short at ``limit`` seconds (then the rate is of the letters written so far:
    the old claim takes an hour over 12,000 letters in 300 actions)."""
    db = root / f"run-{run}.db"
    shutil.copy(base, db)
    shutil.rmtree(root / "outbox", ignore_errors=True)
    with (root / "stderr.log").open("w+") as err:
        proc = subprocess.Popen([dispatcher_bin(), "run", "--once"], env=env_for(root, db), stderr=err)
        try:
            proc.wait(limit)
            cut = False
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # a graceful stop: it hands its leases back
            proc.wait(60)
            cut = True
        err.seek(0)
        log = err.read()
    tallies = re.findall(r"sent (\d+) · retry (\d+) · failed (\d+) · (\d+) letters/s", log)
    with sqlite3.connect(db) as conn:
        sent = conn.execute("select count(*) from deliveries where status = 'sent'").fetchone()[0]
    done = not cut and tallies and int(tallies[-1][0]) == letters and sent == letters
    if proc.returncode if not cut else sent < 2:
        raise RuntimeError(f"run {run} in {root}: rc {proc.returncode}, tally {tallies}, {sent} sent\n{log}")
    if not cut and not done:
        raise RuntimeError(f"run {run} in {root}: {sent} of {letters} sent, tally {tallies}\n{log}")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    return sending_rate(root / "outbox" / "new", None if cut else letters), cut


def sending_rate(maildir: Path, letters: int | None) -> float:
    """Letters/s from the first letter written to the last: the send phase alone, without start-up
    and planning (a Maildir file's name starts with the time it was written, in ns)."""
    stamps = sorted(int(name.name.split(".", 1)[0]) for name in maildir.iterdir())
    if letters is not None and len(stamps) != letters:
        raise RuntimeError(f"{maildir}: {len(stamps)} letters, the store says {letters} sent")
    return (len(stamps) - 1) / max((stamps[-1] - stamps[0]) / 1e9, 1e-9)


def children_cpu() -> float:
    """CPU seconds (user and system) of the child processes waited for so far: what a run cost,
    steadier than its rate when other processes share the cores."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def throughput(
    tmp: Path, shapes: list[int], letters: int, runs: int, limit: float
) -> dict[int, list[tuple[float, bool, float]]]:
    """Per shape and run: letters/s, whether cut short, the run's CPU seconds (with start-up and planning)."""
    bases = {a: prepare(tmp / f"send-{a}", a, letters) for a in shapes}
    rates: dict[int, list[tuple[float, bool, float]]] = {a: [] for a in shapes}
    for r in range(runs):
        for a in shapes:  # interleaved: a slow spell of the machine hits every shape alike
            before = children_cpu()
            rate, cut = send_once(tmp / f"send-{a}", bases[a], r, letters, limit)
            rates[a].append((rate, cut, children_cpu() - before))
            cut_note = " (cut)" if cut else ""
            say(f"run {r + 1}/{runs}: {a} action(s) × 2 targets: {rate:,.0f} letters/s{cut_note}")
    return rates


# ---------------------------------------------------------------------------------------- one round
def round_store(url: str, actions: int, targets: int, idle: bool) -> tuple[Store, list[ClaimGroup]]:
    """A store with ``actions`` × ``targets`` groups of ``LETTERS`` letters each (due now, or for nine groups
    in ten an hour from now when ``idle``), and the claim groups."""
    from sqlalchemy import text

    from dispatcher.models import Caps, ClaimGroup, SupporterRecord
    from dispatcher.store import open_store

    now = dt.datetime.now(dt.UTC)
    store = open_store(url)
    store.import_supporters(
        (
            SupporterRecord(f"s{a}-{i}@example.net", f"S {a}-{i}", "en", "Town", "GB", (f"a{a}",), now)
            for a in range(actions)
            for i in range(LETTERS)
        ),
        now,
    )
    groups = []
    caps = Caps(30, 300, 120)  # the settings' defaults: plans in force
    for a in range(actions):
        when = now + dt.timedelta(hours=1) if idle and a % 10 else now
        pairs = [(f"t{k}", "email") for k in range(targets)]
        store.plan(f"a{a}", pairs, when)
        keys = {t: (f"email:{t}@parl{a}.example",) for t, _ in pairs}
        groups += [ClaimGroup(f"a{a}", t, c, keys[t], None, caps) for t, c in pairs]
    if url.startswith("postgresql"):  # as autovacuum would soon after: plans from real statistics
        with store.engine.begin() as conn:  # type: ignore[attr-defined]
            conn.execute(text("ANALYZE"))
    return store, groups


class StatementClock:
    """Time spent in the driver's execute and fetch calls: the round's database time, apart
    from building statements and handling rows in Python."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.spent = 0.0
        self.by_statement: dict[str, float] = {}
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        conn.info["bench_started"] = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        took = time.perf_counter() - conn.info.pop("bench_started")
        self.spent += took
        key = " ".join(statement.split()[:4])
        self.by_statement[key] = self.by_statement.get(key, 0.0) + took


def claim_rounds(
    url: str, shape: tuple[int, int], rounds: int, room: int, idle: bool
) -> dict[str, list[float]]:
    """Per round: its wall time and its time in the database (both ms)."""
    from dispatcher.pacing import Limits
    from dispatcher.store import ClaimRequest

    store, groups = round_store(url, *shape, idle)
    clock = StatementClock(store.engine)  # type: ignore[attr-defined]
    lifted = Limits(1e9, 1e9, 1e9)
    out: dict[str, list[float]] = {"wall": [], "database": []}
    for r in range(rounds + 1):
        now = dt.datetime.now(dt.UTC)
        clock.spent = 0.0
        start = time.perf_counter()
        request = ClaimRequest(groups, {"email": room}, lifted, r)
        batch = store.claim("bench", request, now, dt.timedelta(minutes=2))
        elapsed, spent = time.perf_counter() - start, clock.spent
        if not batch.claims:
            raise RuntimeError(f"round {r} on {url.split(':')[0]} claimed nothing")
        if r:  # the first round warms caches (and compiles statements once)
            out["wall"].append(elapsed * 1000)
            out["database"].append(spent * 1000)
        reached = getattr(batch, "reached", 0) % len(groups)  # the next round starts there
        groups = groups[reached:] + groups[:reached]
    if os.environ.get("CLAIM_SCALE_STATEMENTS"):
        for key, took in sorted(clock.by_statement.items(), key=lambda kv: -kv[1]):
            say(f"  {took * 1000 / (rounds + 1):8.2f} ms/round  {key}")
    store.close()
    return out


def pg_url() -> Iterator[str]:
    subprocess.run(["dropdb", "--if-exists", PG_DB], check=True)
    subprocess.run(["createdb", PG_DB], check=True)
    try:
        yield f"postgresql:///{PG_DB}"
    finally:
        subprocess.run(["dropdb", "--if-exists", PG_DB], check=True)


def round_times(
    tmp: Path, dbs: list[str], shape: tuple[int, int], rounds: int, room: int
) -> dict[str, dict[str, list[float]]]:
    out = {}
    for db in dbs:
        for idle in (False, True):
            label = f"{db}{' (9 groups in 10 idle)' if idle else ''}"
            if db == "sqlite":
                out[label] = claim_rounds(f"sqlite:///{tmp / f'round-{idle}.db'}", shape, rounds, room, idle)
            else:
                for url in pg_url():
                    out[label] = claim_rounds(url, shape, rounds, room, idle)
            spent = statistics.median(out[label]["database"])
            say(f"claim round, {label}: median {spent:.1f} ms in the database")
    return out


# ---------------------------------------------------------------------------------------- report
def git_head() -> str:
    out = subprocess.run(
        ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return out.stdout.strip() or "?"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--letters", type=int, default=12_000)
    p.add_argument("--actions", default="1,100,300", help="comma-separated action counts (2 targets each)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--round-shape", default="300x3", help="actions x targets of the claim-round store")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--room", type=int, default=200, help="letters one round may claim (the batch size)")
    p.add_argument("--db", default="sqlite,postgresql", help="where to time a claim round ('': nowhere)")
    p.add_argument("--time-limit", type=float, default=300, help="seconds before a send run is cut short")
    p.add_argument("--skip-send", action="store_true", help="only the claim round")
    p.add_argument(
        "--code", help="measure the dispatcher package in this directory (git archive main dispatcher)"
    )
    args = p.parse_args(argv)
    if args.code:
        global CODE
        CODE = str(Path(args.code).resolve())
        sys.path.insert(0, CODE)
    import dispatcher

    say(f"measuring {Path(dispatcher.__file__).parent}")
    shapes = [int(a) for a in args.actions.split(",")]
    a, t = (int(x) for x in args.round_shape.split("x"))
    say(f"git {git_head()}, load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="claim-scale-") as name:
        tmp = Path(name)
        rates = {} if args.skip_send else throughput(tmp, shapes, args.letters, args.runs, args.time_limit)
        rounds = round_times(tmp, [db for db in args.db.split(",") if db], (a, t), args.rounds, args.room)
    print(f"git {git_head()}; load {os.getloadavg()[0]:.2f} after")
    print("command: python bench/claim_scale.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    one = statistics.median(rate for rate, _, _ in rates[shapes[0]]) if rates else 0.0
    for n, samples in rates.items():
        rs = [rate for rate, _, _ in samples]
        med = statistics.median(rs)
        cut = sum(c for _, c, _ in samples)
        cpu = statistics.median(c for _, _, c in samples)
        print(
            f"{n:>4} action(s) × 2 targets, {args.letters} letters: median {med:,.0f} letters/s "
            f"(min {min(rs):,.0f}, max {max(rs):,.0f}, {len(rs)} runs; {med / one:.2f}× the first shape; "
            f"CPU {cpu:.1f} s a run)" + (f"; {cut} run(s) cut at {args.time_limit:.0f} s" if cut else "")
        )
    for label, times in rounds.items():
        db, wall = times["database"], times["wall"]
        print(
            f"one claim round, {a} × {t} groups, room {args.room}, {label}: database time median "
            f"{statistics.median(db):.1f} ms (min {min(db):.1f}, max {max(db):.1f}), whole call median "
            f"{statistics.median(wall):.1f} ms, {len(db)} rounds"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
