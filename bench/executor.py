"""Benchmark: one `manage.py execute_sequences` process against Postgres and the sandbox.

    .venv/bin/python bench/executor.py                       # 20,000 enrollments, 100 SDRs
    .venv/bin/python bench/executor.py --sdrs 1000 --per-sdr 200   # 200,000, 1,000 SDRs
    .venv/bin/python bench/executor.py --write docs/PERFORMANCE.md  # both, recorded
    .venv/bin/python bench/executor.py --compare before-redesign    # that ref, then this tree

It builds a scratch database (dropped afterwards), seeds one active, provisioned sequence per
SDR with `--per-sdr` ready enrollments, serves the Smartlead sandbox at `--latency-ms` per
request, and times the whole executor process. It checks the work as well as the clock: every
enrollment pushed once, the minimum number of add-leads requests, no 429. SQL round trips
(statements plus commits) are counted by this harness around the process, not by the executor.

With `--compare REF` it also benchmarks REF (a git worktree, see bench/versions.py) on its own
database and sandbox, the two versions' timed runs interleaved, and reports each and their ratio.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import keys, versions  # noqa: E402
from smartlead.api import SmartleadClient  # noqa: E402
from smartlead.sandbox import SandboxServer  # noqa: E402

PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
LEADS_ROUTE = "POST /campaigns/{campaign_id}/leads"
# Runs manage.py in the timed process with its SQL round trips counted: every statement through
# Django's execute wrappers, every commit; printed to stderr with the process's CPU and memory.
MEASURE = """
import os, resource, runpy, sys, threading
sys.argv = sys.argv[1:]
trips, lock = [0], threading.Lock()
def count(execute, sql, params, many, context):
    with lock:
        trips[0] += 1
    return execute(sql, params, many, context)
def attach(sender, connection, **kwargs):
    if count not in connection.execute_wrappers:
        connection.execute_wrappers.append(count)
def counted(commit):
    def wrapper(self):
        with lock:
            trips[0] += 1
        return commit(self)
    return wrapper
import django.db.backends.base.base as base
from django.db.backends.signals import connection_created
connection_created.connect(attach)
base.BaseDatabaseWrapper._commit = counted(base.BaseDatabaseWrapper._commit)
try:
    if os.environ.get('BENCH_PROFILE') and '--json' in sys.argv:
        import cProfile
        main = "runpy.run_path('manage.py', run_name='__main__')"
        cProfile.run(main, os.environ['BENCH_PROFILE'])
    else:
        runpy.run_path('manage.py', run_name='__main__')
finally:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print('CPU_S', usage.ru_utime + usage.ru_stime, file=sys.stderr)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over an exec, so it would report this
    # harness's own size (the sandbox's leads) at the moment it started the executor.
    status = open('/proc/self/status').read()
    print('MAXRSS_KB', status.split('VmHWM:')[1].split()[0], file=sys.stderr)
    print('SQL_ROUND_TRIPS', trips[0], file=sys.stderr)
"""


def scratch_database(name: str) -> str:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{PG}/{name}"


def drop_database(name: str) -> None:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def environment(database_url: str, sandbox: SandboxServer) -> dict[str, str]:
    return os.environ | {
        "DATABASE_URL": database_url,
        "DJANGO_SECRET_KEY": keys.DJANGO_SECRET_KEY,
        "SMARTLEAD_KEY_ENCRYPTION_KEYS": keys.SMARTLEAD_KEY_ENCRYPTION_KEYS,
        "DJANGO_DEBUG": "false",
        "SMARTLEAD_BASE_URL": sandbox.base_url,
        "LOG_LEVEL": "WARNING",
    }


def accounts(sdrs: int) -> list[dict]:
    return [
        {
            "api_key": f"bench-key-{n:05d}-abcdef",
            "plan": "pro",
            "email_accounts": [
                {"id": 500_000 + n, "from_email": f"sdr{n}@bench.test", "from_name": f"SDR {n}"}
            ],
        }
        for n in range(sdrs)
    ]


def create_campaigns(sandbox: SandboxServer, keys: list[str]) -> list[int]:
    def create(key: str) -> int:
        with SmartleadClient(key, base_url=sandbox.base_url) as client:
            return client.create_campaign("bench").id

    with ThreadPoolExecutor(32) as pool:
        return list(pool.map(create, keys))


def seed(database_url: str, keys: list[str], campaigns: list[int], per_sdr: int) -> None:
    """Rows straight into the hosted tables with set-based SQL: seeding 200,000 takes seconds."""
    profiles = [
        (uuid.uuid4(), f"sdr{n}@bench.test", key, str(500_000 + n)) for n, key in enumerate(keys)
    ]
    sequences = [
        (uuid.uuid4(), f"Bench {n}", p[0], str(c))
        for n, (p, c) in enumerate(zip(profiles, campaigns, strict=True))
    ]
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO profiles (id, email, smartlead_api_key, smartlead_email_account_id) "
            "VALUES (%s, %s, %s, %s)",
            profiles,
        )
        cur.executemany(
            "INSERT INTO sequences (id, name, status, created_by, smartlead_campaign_id) "
            "VALUES (%s, %s, 'active', %s, %s)",
            sequences,
        )
        cur.execute(
            "INSERT INTO sequence_steps (sequence_id, step_number, step_type, subject, body, "
            "delay_days) SELECT s.id, n, CASE WHEN n = 3 THEN 'call' ELSE 'email' END, 'Hi', "
            "'Hello {{first_name}}', CASE WHEN n = 1 THEN 0 ELSE 3 END "
            "FROM sequences s, generate_series(1, 3) n"
        )
        cur.execute(
            "WITH c AS (INSERT INTO contacts (email, first_name, created_by) "
            "SELECT 'lead' || s.rn || '.' || g || '@prospect.test', 'Lead', s.created_by "
            "FROM (SELECT id, created_by, row_number() OVER () rn FROM sequences) s, "
            "generate_series(1, %s) g RETURNING id, created_by) "
            "INSERT INTO sequence_enrollments (sequence_id, contact_id, next_send_at) "
            "SELECT s.id, c.id, now() - interval '1 minute' FROM c "
            "JOIN sequences s ON s.created_by = c.created_by",
            [per_sdr],
        )
        cur.execute("ANALYZE")


def timed_run(code: Path, env: dict[str, str], *args: str) -> tuple[float, int, float, int, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, "manage.py", *args],
        cwd=code,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"executor failed:\n{done.stderr[-3000:]}")
    rss = int(done.stderr.rsplit("MAXRSS_KB", 1)[1].split()[0])
    cpu = float(done.stderr.rsplit("CPU_S", 1)[1].split()[0])
    trips = int(done.stderr.rsplit("SQL_ROUND_TRIPS", 1)[1].split()[0])
    return wall, rss, cpu, trips, done.stdout


def cpu_seconds() -> dict[str, float]:
    """CPU time so far of this process: the sandbox's threads, while the executor runs."""
    own = os.times()
    return {"sandbox": own.user + own.system}


def verify(database_url: str, total: int) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        advanced = conn.execute(
            "SELECT count(*) FROM sequence_enrollments WHERE current_step = 2"
        ).fetchone()[0]
        pushed = conn.execute(
            "SELECT count(*), count(DISTINCT enrollment_id) FROM outboundhq_push "
            "WHERE state = 'pushed'"
        ).fetchone()
    assert advanced == total, f"{advanced} of {total} enrollments advanced"
    assert pushed == (total, total), f"ledger {pushed}, expected {total} once each"
    return {"advanced": advanced, "ledger_rows": pushed[0]}


def reset(database_url: str) -> None:
    """Everything ready again, nothing pushed: the next repetition does the same work."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE sequence_enrollments SET current_step = 1, "
            "next_send_at = now() - interval '1 minute'"
        )
        conn.execute("DELETE FROM outboundhq_push")
        conn.execute("VACUUM ANALYZE sequence_enrollments, outboundhq_push")


def any_sequence(database_url: str) -> str:
    """A sequence to start on: the start-up probe plans one lead of it and sends nothing
    (newer versions refuse an unknown id with an error, as they should)."""
    with psycopg.connect(database_url) as conn:
        return str(conn.execute("SELECT id FROM sequences LIMIT 1").fetchone()[0])


def wait_for_quiet(limit: float, below: float) -> float:
    """Other work on the machine shows up as wall time: wait (up to `limit` s) until it's idle."""
    deadline = time.monotonic() + limit
    while os.getloadavg()[0] > below and time.monotonic() < deadline:
        time.sleep(2)
    return os.getloadavg()[0]


def measure(version: Version, total: int) -> dict:
    env, sandbox, database_url = version.env, version.sandbox, version.database_url
    startup, *_ = timed_run(
        version.code,
        env,
        "execute_sequences",
        "--dry-run",
        "--limit",
        "1",
        "--sequence",
        any_sequence(database_url),
    )
    sandbox.reset_counts()
    before = cpu_seconds()
    wall, rss_kb, cpu, trips, out = timed_run(version.code, env, "execute_sequences", "--json")
    sandbox_cpu = cpu_seconds()["sandbox"] - before["sandbox"]
    record = json.loads(out)
    checked = verify(database_url, total)
    return {
        "wall": wall,
        "startup": startup,
        "rss_kb": rss_kb,
        "cpu": cpu,
        "sql_round_trips": trips,
        "sandbox_cpu": sandbox_cpu,
        "record": record,
        "checked": checked,
        "requests": sandbox.request_count(route=LEADS_ROUTE),
        "http_429": sandbox.request_count(status=429),
    }


@dataclass
class Version:
    """One version of the code under test, with its own database and sandbox."""

    label: str
    code: Path
    database_url: str = ""
    sandbox: SandboxServer | None = None
    env: dict[str, str] = field(default_factory=dict)
    runs: list[dict] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)


def run(
    sdrs: int,
    per_sdr: int,
    latency_ms: float,
    batch: int,
    repeat: int = 3,
    quiet: tuple[float, float] = (0.0, 1.0),
    codes: tuple[tuple[str, Path], ...] = (("this tree", ROOT),),
) -> list[dict]:
    """Seeds once per version, then times `repeat` executor runs of each (reset in between,
    the versions taking turns) and keeps each version's median."""
    versions = [Version(label, code) for label, code in codes]
    try:
        for n, version in enumerate(versions):
            prepare(version, f"outboundhq_bench_{sdrs}x{per_sdr}_{n}", sdrs, per_sdr, batch)
            version.sandbox.latency = latency_ms / 1000
        for version in versions:
            # Untimed: the first run of a version does one-time work (each key's first check
            # is recorded) that a deployed service did long ago.
            measure(version, sdrs * per_sdr)
        for _ in range(repeat):
            for version in versions:
                reset(version.database_url)
                version.loads.append(wait_for_quiet(*quiet))
                version.runs.append(measure(version, sdrs * per_sdr))
        return [summarize(v, sdrs, per_sdr, latency_ms, batch) for v in versions]
    finally:
        for n, version in enumerate(versions):
            if version.sandbox is not None:
                version.sandbox.stop()
            drop_database(f"outboundhq_bench_{sdrs}x{per_sdr}_{n}")


def prepare(version: Version, name: str, sdrs: int, per_sdr: int, batch: int) -> None:
    version.database_url = scratch_database(name)
    version.sandbox = SandboxServer(accounts(sdrs), requests_per_minute=60).start()
    version.env = environment(version.database_url, version.sandbox) | {
        "SMARTLEAD_LEADS_PER_REQUEST": str(batch)
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v0"],
        cwd=version.code,
        env=version.env,
        check=True,
        timeout=300,
    )
    api_keys = [a["api_key"] for a in accounts(sdrs)]
    seed(version.database_url, api_keys, create_campaigns(version.sandbox, api_keys), per_sdr)
    if (Path(version.code) / "profiles/management/commands/encrypt_smartlead_keys.py").exists():
        # Seeded in plain text; a deployed service holds them encrypted (and would otherwise pay
        # the first run's write-back in the timed run).
        subprocess.run(
            [sys.executable, "manage.py", "encrypt_smartlead_keys"],
            cwd=version.code,
            env=version.env,
            check=True,
            capture_output=True,
            timeout=300,
        )


def summarize(version: Version, sdrs: int, per_sdr: int, latency_ms: float, batch: int) -> dict:
    runs = sorted(version.runs, key=lambda r: r["wall"])
    m = runs[len(runs) // 2]
    concurrency = int(os.environ.get("EXECUTOR_CONCURRENCY", 8))
    record = m["record"]
    return {
        "code": version.label,
        "enrollments": sdrs * per_sdr,
        "sdrs": sdrs,
        "latency_ms": latency_ms,
        "batch": batch,
        "wall_s": round(m["wall"], 2),
        "all_walls_s": [round(r["wall"], 2) for r in version.runs],
        "load_before": [round(x, 2) for x in version.loads],
        "startup_s": round(m["startup"], 2),
        "requests": m["requests"],
        "minimum_requests": sdrs * math.ceil(per_sdr / batch),
        "http_429": m["http_429"],
        "sql_round_trips": m["sql_round_trips"],
        "round_trips_per_100": round(m["sql_round_trips"] / (sdrs * per_sdr) * 100, 2),
        "peak_rss_mb": round(max(r["rss_kb"] for r in runs) / 1024, 1),
        "executor_cpu_s": round(m["cpu"], 2),
        "sandbox_cpu_s": round(m["sandbox_cpu"], 2),
        "floor_s": round(m["startup"] + m["requests"] * latency_ms / 1000 / concurrency, 2),
        "sequential_design_s": round(sdrs * per_sdr * latency_ms / 1000),
        "pushed": record["pushed"],
        **m["checked"],
    }


def table(results: list[dict]) -> str:
    rows = [
        "| code | enrollments (SDRs) | wall, median (all runs) | floor | requests (minimum) "
        "| 429s | SQL round trips (per 100) | peak RSS | CPU: executor, sandbox "
        "| one-call-per-enrollment design |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        walls = ", ".join(f"{w}" for w in r["all_walls_s"])
        rows.append(
            f"| {r['code']} | {r['enrollments']:,} ({r['sdrs']:,}) "
            f"| **{r['wall_s']} s** ({walls}) "
            f"| {r['floor_s']} s | {r['requests']:,} ({r['minimum_requests']:,}) "
            f"| {r['http_429']} | {r['sql_round_trips']:,} ({r['round_trips_per_100']}) "
            f"| {r['peak_rss_mb']} MB | {r['executor_cpu_s']} s, {r['sandbox_cpu_s']} s "
            f"| ≥ {r['sequential_design_s']:,} s ({r['sequential_design_s'] / r['wall_s']:.0f}× "
            "slower) |"
        )
    return "\n".join(rows)


def ratios(results: list[dict]) -> str:
    """This tree against the compared version, size by size: what the verdict is made on."""
    lines = []
    for before, after in zip(results[::2], results[1::2], strict=True):
        lines.append(
            f"- {after['enrollments']:,} enrollments: "
            f"wall {after['wall_s'] / before['wall_s']:.2f}×, "
            f"wall above the floor {excess(after) / max(excess(before), 0.01):.2f}×, "
            f"executor CPU {after['executor_cpu_s'] / before['executor_cpu_s']:.2f}×, SQL round "
            f"trips {after['sql_round_trips'] / before['sql_round_trips']:.2f}× "
            f"({after['code']} ÷ {before['code']})"
        )
    return "\n".join(lines)


def excess(result: dict) -> float:
    return result["wall_s"] - result["floor_s"]


def write_section(path: Path, results: list[dict], *, compared: bool) -> None:
    body = (
        f"Measured {time.strftime('%Y-%m-%d')} on this machine ({os.cpu_count()} cores), "
        f"Postgres 127.0.0.1, sandbox latency {results[0]['latency_ms']:.0f} ms per request, "
        f"batch {results[0]['batch']}, EXECUTOR_CONCURRENCY "
        f"{os.environ.get('EXECUTOR_CONCURRENCY', 8)}. Wall is the whole "
        "`manage.py execute_sequences` process; the floor is its start-up plus "
        "requests × latency / concurrency.\n\n"
        + table(results)
        + (f"\n\nRatios, measured in the same run:\n\n{ratios(results)}" if compared else "")
    )
    record_section(path, "executor-bench", body, heading="## Executor")


def record_section(path: Path, name: str, body: str, *, heading: str) -> None:
    """`body` between `<!-- NAME:begin -->` and `<!-- NAME:end -->` in `path`, in place of what
    was there; a new section goes at the end, under `heading` unless the file has it already."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    section = f"{begin}\n{body}\n{end}"
    text = path.read_text() if path.exists() else "# Performance\n"
    if begin in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end) :]
    elif f"\n{heading}\n" in text:
        text = text.rstrip() + "\n\n" + section + "\n"
    else:
        text = text.rstrip() + f"\n\n{heading}\n\n" + section + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdrs", type=int, default=100)
    parser.add_argument("--per-sdr", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per size (median kept)")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="before each run, wait up to this many seconds for an idle machine",
    )
    parser.add_argument("--quiet-below", type=float, default=1.0, help="1-minute load average")
    parser.add_argument("--write", type=Path, help="run both sizes and record them in this file")
    parser.add_argument("--compare", metavar="REF", help="also run this git ref, interleaved")
    args = parser.parse_args()
    sizes = [(100, 200), (1000, 200)] if args.write else [(args.sdrs, args.per_sdr)]
    codes: tuple[tuple[str, Path], ...] = (("this tree", ROOT),)
    if args.compare:
        codes = ((versions.describe(args.compare), versions.checkout(args.compare)), *codes)
    results = []
    for sdrs, per_sdr in sizes:
        for result in run(
            sdrs,
            per_sdr,
            args.latency_ms,
            args.batch,
            args.repeat,
            (args.wait_quiet, args.quiet_below),
            codes,
        ):
            print(json.dumps(result), flush=True)
            results.append(result)
    print(table(results))
    if args.compare:
        print(ratios(results))
    if args.write:
        write_section(args.write, results, compared=bool(args.compare))


if __name__ == "__main__":
    main()
