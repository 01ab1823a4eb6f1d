"""Planning at scale: import N supporters, plan one action with two targets, report time and RSS.

    python bench/plan_scale.py --n 100000 [--url postgresql:///bench]

Each phase runs in a fresh child process so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NOW = dt.datetime.now(dt.UTC)


def phase_import(url: str, n: int) -> dict[str, float]:
    from dispatcher.models import SupporterRecord
    from dispatcher.store import open_store

    store = open_store(url)
    records = (
        SupporterRecord(f"s{i}@example.net", f"Supporter {i}", "en", "Town", "GB", ("bench",), NOW)
        for i in range(n)
    )
    start = time.perf_counter()
    store.import_supporters(records, NOW)
    return {"seconds": time.perf_counter() - start}


def phase_plan(url: str, n: int) -> dict[str, float]:
    from dispatcher.store import open_store

    store = open_store(url)
    start = time.perf_counter()
    created = store.plan("bench", [("t1", "email"), ("t2", "email")], NOW)
    seconds = time.perf_counter() - start
    assert created == 2 * n, created
    again = time.perf_counter()
    assert store.plan("bench", [("t1", "email"), ("t2", "email")], NOW) == 0
    return {"seconds": seconds, "created": created, "replan_seconds": time.perf_counter() - again}


def child(phase: str, url: str, n: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--phase", phase, "--url", url, "--n", str(n)],
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--url", help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--phase", choices=["import", "plan"])
    args = parser.parse_args()
    if args.phase:
        result = (phase_import if args.phase == "import" else phase_plan)(args.url, args.n)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{Path(tmp) / 'plan.db'}"
        imported = child("import", url, args.n)
        planned = child("plan", url, args.n)
    print(f"command: python bench/plan_scale.py --n {args.n}" + (f" --url {args.url}" if args.url else ""))
    print(f"database: {url.split('://')[0]}  supporters: {args.n}  deliveries: {int(planned['created'])}")
    print(f"import  {imported['seconds']:7.2f} s  peak RSS {imported['peak_rss_mb']:6.1f} MB")
    rate = planned["created"] / planned["seconds"]
    print(
        f"plan    {planned['seconds']:7.2f} s  peak RSS {planned['peak_rss_mb']:6.1f} MB"
        f"  ({rate:,.0f} deliveries/s; re-plan {planned['replan_seconds']:.2f} s)"
    )


if __name__ == "__main__":
    main()
