"""Load test of POST /webhooks/smartlead under gunicorn, against a scratch PostgreSQL database.

    .venv/bin/python bench/webhooks.py            # the run recorded in docs/PERFORMANCE.md
    .venv/bin/python bench/webhooks.py --help     # knobs: workers, threads, duration, rate...

1. Creates the scratch database (dropped first, and again at the end unless --keep-db),
   migrates it, and seeds sequences, contacts and enrollments.
2. Starts gunicorn from the venv (production settings, LOG_LEVEL=WARNING).
3. Phases, each from load processes separate from the server, on loopback, bounded in time
   and count: /health flat out (the ceiling), webhooks flat out (sustained deliveries/s),
   webhooks at a fixed 200/s (latency measured from each request's scheduled send time, so a
   stall counts against the server instead of silently delaying the next request).
4. Checks the database after each webhook phase: rows == distinct events sent, deliveries ==
   requests answered, every event applied within 5 s, engagements and scores exactly once.
5. Prints a table and (unless --no-write) writes it into docs/PERFORMANCE.md.

No third-party load tool needed: hand-built requests on plain sockets, a fresh connection per
request (as Smartlead delivers), threads in several processes. The load generator's CPU is
measured and reported; it shares the machine with the server.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import keys, versions  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "smartlead"
DOC = ROOT / "docs" / "PERFORMANCE.md"
SECTION = "## Webhook receiver"
COMPARE_SECTION = "## Webhook receiver: before and after a change"
LOG = ROOT / "bench" / "results" / "webhooks-gunicorn.log"
SECRET = "bench-" + uuid.uuid4().hex
# Production sits behind a TLS-terminating proxy; without this header Django would redirect.
HEADERS = {"Content-Type": "application/json", "X-Forwarded-Proto": "https"}
# Share of each event type in the load (roughly what a live campaign produces).
MIX = {
    "email_sent": 30,
    "email_open": 33,
    "email_link_click": 12,
    "email_reply": 8,
    "email_bounce": 4,
    "lead_unsubscribed": 2,
    "lead_category_updated": 5,
    "campaign_status_changed": 2,
    "unknown_campaign": 2,
    "unknown_lead": 2,
}
SCORE = {"email_open": 10, "email_link_click": 15, "email_reply": 50}
CAMPAIGN_BASE = 900_000


# --- Database -------------------------------------------------------------------------------


def conninfo(base: str, dbname: str) -> str:
    return re.sub(r"/[^/?]*(\?|$)", f"/{dbname}\\1", base.rstrip("/"), count=1)


def create_database(base: str, name: str) -> str:
    with psycopg.connect(conninfo(base, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return conninfo(base, name)


def drop_database(base: str, name: str) -> None:
    with psycopg.connect(conninfo(base, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate(env: dict[str, str], code: Path) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=code,
        env=env,
        check=True,
    )


def seed(url: str, *, sequences: int, contacts: int, proposed_indexes: bool) -> None:
    """One SDR, `sequences` sequences with campaigns, `contacts` leads spread across them."""
    with psycopg.connect(url, autocommit=True) as conn:
        profile = conn.execute(
            "INSERT INTO profiles (email) VALUES ('sdr@bench.test') RETURNING id"
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO sequences (name, status, created_by, smartlead_campaign_id) "
            "SELECT 'Bench ' || i, 'active', %s, (%s + i)::text FROM generate_series(1, %s) i",
            (profile, CAMPAIGN_BASE, sequences),
        )
        conn.execute(
            "INSERT INTO contacts (email, first_name, engagement_score) "
            "SELECT 'lead' || i || '@bench.test', 'Lead ' || i, 0 FROM generate_series(1, %s) i",
            (contacts,),
        )
        conn.execute(
            "INSERT INTO sequence_enrollments (sequence_id, contact_id) "
            "SELECT s.id, c.id FROM contacts c JOIN sequences s ON s.smartlead_campaign_id = "
            "(%s + 1 + substring(c.email from 'lead([0-9]+)@')::int %% %s)::text",
            (CAMPAIGN_BASE, sequences),
        )
        if proposed_indexes:
            for statement in PROPOSED_INDEXES:
                conn.execute(statement)
        conn.execute("ANALYZE")


# contacts_lower_email_idx is in migrations/PROPOSED_INDEXES.sql; the other is proposed here.
PROPOSED_INDEXES = [
    "CREATE INDEX IF NOT EXISTS contacts_lower_email_idx ON contacts (lower(email))",
    "CREATE INDEX IF NOT EXISTS sequence_enrollments_contact_id_idx "
    "ON sequence_enrollments (contact_id)",
]


# --- Payloads ---------------------------------------------------------------------------------


def templates() -> dict[str, dict[str, Any]]:
    names = {k for k in MIX if not k.startswith("unknown_")} | {"email_reply"}
    return {name: json.loads((FIXTURES / f"{name}.json").read_text()) for name in names}


def make_body(kind: str, rng: random.Random, *, sequences: int, contacts: int, tpl: dict) -> bytes:
    """A real payload shape with a fresh stats_id, for a random seeded lead."""
    lead = rng.randint(1, contacts)
    campaign = CAMPAIGN_BASE + 1 + lead % sequences
    email = f"lead{lead}@bench.test"
    base = "email_reply" if kind.startswith("unknown_") else kind
    payload = dict(tpl[base])
    if kind == "unknown_campaign":
        campaign = 1
    if kind == "unknown_lead":
        email = f"stranger{lead}@elsewhere.test"
    for key in ("to_email", "sl_lead_email", "lead_email"):
        if key in payload:
            payload[key] = email
    for nested in ("leadCorrespondence", "lead_data"):
        if nested in payload:
            payload[nested] = payload[nested] | {"targetLeadEmail": email, "email": email}
    # Microseconds: unsubscribes have no stats_id, so their time must tell them apart.
    payload |= {"campaign_id": campaign, "event_timestamp": datetime.now(UTC).isoformat()}
    if base != "lead_unsubscribed":  # unsubscribes carry no stats_id: they dedupe on the hash
        payload["stats_id"] = str(uuid.UUID(int=rng.getrandbits(128)))
    return json.dumps(payload).encode()


@dataclass
class Plan:
    bodies: list[bytes]
    kinds: list[str]  # the event kind (a key of MIX) of each body
    origins: list[int]  # the index of the body's first occurrence (itself, unless a re-delivery)

    def distinct(self, answered: list[int]) -> Counter[str]:
        """Kinds of the distinct events among the answered bodies (a re-delivery may be the
        only one that got through before the deadline, so count origins, not firsts)."""
        return Counter(self.kinds[o] for o in {self.origins[i] for i in answered})


def plan(seed_value: int, count: int, duplicates: float, **shape: int) -> Plan:
    """`count` deliveries; a share of them re-deliver an earlier body byte for byte."""
    rng = random.Random(seed_value)
    tpl = templates()
    kinds = list(MIX)
    weights = [MIX[k] for k in kinds]
    result = Plan([], [], [])
    for i in range(count):
        if i and rng.random() < duplicates:
            origin = result.origins[rng.randrange(max(0, i - 50), i)]
            result.bodies.append(result.bodies[origin])
            result.kinds.append(result.kinds[origin])
            result.origins.append(origin)
            continue
        kind = rng.choices(kinds, weights)[0]
        result.bodies.append(make_body(kind, rng, tpl=tpl, **shape))
        result.kinds.append(kind)
        result.origins.append(i)
    return result


# --- Load -----------------------------------------------------------------------------------


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    answered: list[int] = field(default_factory=list)  # plan indexes answered 200
    errors: int = 0
    elapsed: float = 0.0
    cpu: float = 0.0  # the load generator's own CPU seconds

    def merge(self, other: Tally) -> None:
        self.latencies += other.latencies
        self.statuses += other.statuses
        self.answered += other.answered
        self.errors += other.errors
        self.cpu += other.cpu
        self.elapsed = max(self.elapsed, other.elapsed)


def raw_request(method: str, path: str, body: bytes | None) -> bytes:
    """The bytes of one request. Built by hand so the load generator costs the 2 cores it
    shares with the server as little as possible (http.client cost about 0.5 ms a request)."""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    for name, value in HEADERS.items():
        head += f"{name}: {value}\r\n"
    if body is not None:
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + (body or b"")


def send(port: int, raw: bytes) -> int:
    """One request on a fresh connection (as Smartlead's deliveries arrive); its status."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(("127.0.0.1", port))
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    if not answer.startswith(b"HTTP/1.") or b"\r\n\r\n" not in answer:
        raise OSError(f"not a whole HTTP response: {answer[:60]!r}")
    return int(answer[9:12])


def thread_load(job: dict[str, Any], index: int, out: Tally, start_at: float) -> None:
    """One client. Closed loop (back to back) or open loop (`rate`: on a fixed schedule)."""
    bodies = job["plan"].bodies
    mine = range(index, len(bodies) if bodies else 10**9, job["threads_total"])
    deadline = start_at + job["duration"]
    for i in mine:
        scheduled = start_at + i / job["rate"] if job["rate"] else time.monotonic()
        if scheduled >= deadline:
            break
        if job["rate"]:
            time.sleep(max(0.0, scheduled - time.monotonic()))
        raw = raw_request(job["method"], job["path"], bodies[i] if bodies else None)
        try:
            status = send(job["port"], raw)
        except (OSError, ValueError):
            out.errors += 1
            continue
        out.latencies.append(time.monotonic() - scheduled)
        out.statuses[status] += 1
        if bodies and status == 200:
            out.answered.append(i)


def process_load(job: dict[str, Any], first: int, queue: Any) -> None:
    tallies = [Tally() for _ in range(job["threads"])]
    start_at = job["start_at"]
    threads = [
        threading.Thread(target=thread_load, args=(job, first + i, tallies[i], start_at))
        for i in range(job["threads"])
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = Tally()
    for tally in tallies:
        total.merge(tally)
    total.elapsed = time.monotonic() - start_at
    total.cpu = time.process_time()  # a forked process starts counting from zero
    queue.put(total)


def run_load(
    *, port: int, method: str, path: str, load: Plan | None, rate: float, duration: float, args: Any
) -> Tally:
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    job = {
        "port": port,
        "method": method,
        "path": path,
        "plan": load or Plan([], [], []),
        "rate": rate,
        "duration": duration,
        "threads": args.threads_per_process,
        "threads_total": args.processes * args.threads_per_process,
        "start_at": time.monotonic() + 0.5,  # CLOCK_MONOTONIC is shared by the processes
    }
    procs = [
        ctx.Process(target=process_load, args=(job, p * job["threads"], queue))
        for p in range(args.processes)
    ]
    for proc in procs:
        proc.start()
    total = Tally()
    for _ in procs:
        total.merge(queue.get(timeout=duration + 120))
    for proc in procs:
        proc.join()
    return total


# --- Where the CPU goes -----------------------------------------------------------------------


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of one process, from /proc (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_of(parent: int) -> list[int]:
    pids = [parent]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                pids.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def backends_of(url: str) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchall()
    return [pid for (pid,) in rows]


class CpuMeter:
    """CPU seconds used by the gunicorn processes and their Postgres backends in a phase."""

    def __init__(self, server_pid: int, url: str) -> None:
        self.server_pid, self.url = server_pid, url
        self.start = self.sample()

    def sample(self) -> dict[str, dict[int, float]]:
        return {
            "server": {pid: cpu_of(pid) for pid in children_of(self.server_pid)},
            "postgres": {pid: cpu_of(pid) for pid in backends_of(self.url)},
        }

    def used(self) -> dict[str, float]:
        end = self.sample()
        return {
            part: sum(cpu - self.start[part].get(pid, 0.0) for pid, cpu in end[part].items())
            for part in end
        }


# --- Checks ---------------------------------------------------------------------------------


def wait_applied(url: str, limit: float = 10.0) -> float:
    """Seconds until no stored event is waiting, after the load stopped."""
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() - started < limit:
            waiting = conn.execute(
                "SELECT count(*) FROM smartlead_webhook_event WHERE outcome = 'received'"
            ).fetchone()[0]
            if not waiting:
                return time.monotonic() - started
            time.sleep(0.05)
    return float("inf")


def check(url: str, tally: Tally, load: Plan, since_id: int) -> dict[str, Any]:
    """What the database says about the deliveries of one phase."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT count(*), coalesce(sum(deliveries), 0), "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY lag), "
            "percentile_cont(0.99) WITHIN GROUP (ORDER BY lag), max(lag), coalesce(max(id), 0), "
            "count(DISTINCT processed_at) "  # one timestamp per applied batch
            "FROM (SELECT id, deliveries, processed_at, "
            "extract(epoch FROM processed_at - received_at) AS lag "
            "FROM smartlead_webhook_event WHERE id > %s) AS phase",
            (since_id,),
        ).fetchone()
        outcomes = dict(
            conn.execute(
                "SELECT outcome, count(*) FROM smartlead_webhook_event WHERE id > %s GROUP BY 1",
                (since_id,),
            ).fetchall()
        )
        engagements, score = conn.execute(
            "SELECT (SELECT count(*) FROM engagements), "
            "(SELECT coalesce(sum(engagement_score), 0) FROM contacts)"
        ).fetchone()
    distinct = sum(load.distinct(tally.answered).values())
    return {
        "rows": rows[0],
        "distinct_sent": distinct,
        "deliveries": rows[1],
        "answered_200": tally.statuses[200],
        "apply_p50": rows[2] or 0.0,
        "apply_p99": rows[3] or 0.0,
        "apply_max": rows[4] or 0.0,
        "last_id": rows[5],
        "batches": rows[6],
        "outcomes": outcomes,
        "engagements_total": engagements,
        "score_total": score,
    }


def expected_effects(distinct: Counter[str]) -> tuple[int, int]:
    """Engagements and score points distinct events must produce, once each."""
    applied = {k: n for k, n in distinct.items() if not k.startswith("unknown_")}
    applied.pop("campaign_status_changed", None)
    return sum(applied.values()), sum(SCORE.get(k, 0) * n for k, n in applied.items())


# --- Server ---------------------------------------------------------------------------------


def start_server(args: Any, env: dict[str, str], code: Path) -> subprocess.Popen[bytes]:
    command = [str(ROOT / ".venv" / "bin" / "gunicorn"), "outboundhq.wsgi"]
    config = args.gunicorn_config or str(code / "gunicorn.conf.py")
    command += ["-c", config, "-w", str(args.workers), "-b", f"127.0.0.1:{args.port}"]
    if args.threads > 1:
        command += ["-k", "gthread", "--threads", str(args.threads)]
    # By default the repo's gunicorn.conf.py, as in production (JSON access log through the
    # redaction filter); the server's output goes to a log file.
    LOG.parent.mkdir(exist_ok=True)
    with LOG.open("wb") as log:
        server = subprocess.Popen(command, cwd=code, env=env, stdout=log, stderr=log)  # noqa: S603
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if send(args.port, raw_request("GET", "/health", None)) == 200:
                return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("gunicorn did not answer /health within 30 s")


# --- Report ---------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


def machine() -> str:
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        cpu = found.group(1).strip() if found else cpu
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kb = int(re.search(r"MemTotal:\s*(\d+)", meminfo.read_text()).group(1))
        memory = f", {kb / 1024 / 1024:.0f} GB RAM"
    return f"{os.cpu_count()} vCPU ({cpu}){memory}, {platform.system()} {platform.release()}"


def row(name: str, tally: Tally) -> str:
    throughput = sum(tally.statuses.values()) / tally.elapsed if tally.elapsed else 0
    codes = ", ".join(f"{code}×{n}" for code, n in sorted(tally.statuses.items()))
    return (
        f"| {name} | {sum(tally.statuses.values())} | {throughput:,.0f}/s | "
        f"{pct(tally.latencies, 0.5) * 1000:.1f} ms | {pct(tally.latencies, 0.99) * 1000:.1f} ms | "
        f"{max(tally.latencies, default=0) * 1000:.0f} ms | {codes}"
        + (f", {tally.errors} errors" if tally.errors else "")
        + " |"
    )


def cpu_row(name: str, tally: Tally, cpu: dict[str, float]) -> str:
    n = max(1, sum(tally.statuses.values()))
    parts = [cpu["server"], cpu["postgres"], tally.cpu]
    # What the machine could serve if nothing else ran on it: its CPUs over the CPU a request
    # costs (server and Postgres, plus this load generator).
    capacity = (os.cpu_count() or 1) * n / sum(parts)
    return (
        f"| {name} | "
        + " | ".join(f"{1000 * x / n:.2f} ms" for x in parts)
        + f" | {capacity:,.0f}/s |"
    )


def verdicts(results: dict[str, Any]) -> list[tuple[str, bool, str]]:
    flat, fixed = results["flat"], results["fixed"]
    flat_rate = sum(flat.statuses.values()) / flat.elapsed
    checks = []
    checks.append(("≥ 700 deliveries/s sustained", flat_rate >= 700, f"{flat_rate:,.0f}/s"))
    p99 = pct(fixed.latencies, 0.99) * 1000
    checks.append(("p99 ≤ 50 ms at 200/s", p99 <= 50, f"{p99:.1f} ms"))
    for name in ("flat", "fixed"):
        db = results[f"{name}_db"]
        ok = db["rows"] == db["distinct_sent"] and db["deliveries"] == db["answered_200"]
        checks.append(
            (
                f"{name}: rows = distinct events sent, deliveries = 200s",
                ok,
                f"{db['rows']} = {db['distinct_sent']}, {db['deliveries']} = {db['answered_200']}",
            )
        )
        drained = results[f"{name}_drained"]
        ok = drained <= 5 and db["apply_max"] <= 5
        checks.append(
            (
                f"{name}: every event applied within 5 s",
                ok,
                f"max {db['apply_max']:.2f} s after arrival (p99 {db['apply_p99'] * 1000:.0f} ms), "
                f"queue empty {drained:.2f} s after the load stopped; "
                f"{db['rows'] / max(1, db['batches']):.0f} events per batch",
            )
        )
    engagements, score = results["expected"]
    db = results["fixed_db"]
    ok = (db["engagements_total"], db["score_total"]) == (engagements, score)
    checks.append(
        (
            "duplicates applied once (engagements, score)",
            ok,
            f"{db['engagements_total']} = {engagements}, {db['score_total']} = {score}",
        )
    )
    return checks


INTRO = """\
`POST /webhooks/smartlead` stores every delivery, answers, and applies the event moments later.
How it stays fast (outboundhq/middleware.py, smartlead/views.py, smartlead/models.py,
smartlead/applying.py, smartlead/applier.py):

- **A lean request path.** Deliveries leave the middleware right after the request-id and
  security middleware (`WebhookFastPath` checks the host and calls the view): sessions, CSRF,
  auth, messages, CORS, static files and framing are for browsers.
- **No health-check round trip.** `CONN_HEALTH_CHECKS` would send a `SELECT 1` before each
  request's first query; it is off, and the store retries once on a fresh connection if the
  kept one was dropped (outboundhq/db.py).
- **Storing is one statement.** `INSERT … ON CONFLICT (dedupe_key) DO UPDATE SET deliveries =
  deliveries + 1 … RETURNING` stores a new event or counts a re-delivery, race-free, in
  autocommit. Nothing else is looked up before the 200.
- **Applying is batched, off the request.** After storing, the view nudges a daemon thread of
  that worker process (`smartlead.applier.Applier`, started by gunicorn's `post_worker_init`).
  It waits 0.25 s for more events, then applies everything waiting in one transaction per
  batch of up to 100, set-based: one campaign-owner lookup and one resolve query (tenant
  scoping), one engagement insert, one score update per distinct increment, one status update
  per status (`Enrollment.objects.end_by_event`), one outcome update per outcome. Worker
  processes take turns through a transaction-level advisory lock, so a burst becomes a few
  large batches instead of many small ones. Each event's changes are all-or-nothing; a failing
  batch is retried one event per transaction, and an event that still fails is marked `failed`
  with its error for `manage.py reprocess_webhooks`.
- **Nothing waits for a batch.** A batch is resolved (the slow read, below) before its events
  are locked with `SELECT … FOR UPDATE SKIP LOCKED`, so a re-delivery of an event being applied
  (its `ON CONFLICT` update needs the row lock) waits a few milliseconds, not the whole batch.
- **Exactly once:** the unique `dedupe_key` (one row per event, duplicates only counted) and the
  row locks (two processes never apply one event; an applied event is never locked again).

**The hosted schema has no index to find a contact by email.** Resolving a (campaign, lead
email) pair therefore reads every enrollment of the campaigns in a batch (through
`sequences.smartlead_campaign_id` and `sequence_enrollments.sequence_id`), and an unknown lead
or an unsubscribe costs a scan of `contacts`: Postgres CPU per event grows with campaign and
table size. Batching hides part of it; two indexes remove it. Neither is created by `migrate`;
the second run below has both:

```sql
-- already in migrations/PROPOSED_INDEXES.sql
CREATE INDEX CONCURRENTLY IF NOT EXISTS contacts_lower_email_idx ON contacts (lower(email));
-- proposed with this benchmark: from a contact to its enrollments
CREATE INDEX CONCURRENTLY IF NOT EXISTS sequence_enrollments_contact_id_idx
    ON sequence_enrollments (contact_id);
```

**Where a delivery's CPU goes** (the CPU tables below, and profiles taken while tuning).
`/health` goes through everything every endpoint pays: gunicorn (a sync worker opens and closes
a connection per request), all of Django's middleware, DRF, its `SELECT 1` and the JSON access
log. A delivery skips most of the middleware but adds its store statement (parsing, hashing,
one insert and its commit) and its share of a batch (about 0.35 ms of Python and 0.3 ms of
Postgres with the indexes, more without). The machine sets the scale: where the issue's
targets were set, a bare Django view with `SELECT 1` answered about 1,700/s (the issue's
figure); here `/health`, a heavier request, answers about 700/s. So each run also gives
deliveries as a share of the same server's `/health` ceiling, which moves much less from
machine to machine than either figure. On a shared machine, `--wait-quiet N` waits up to N
minutes for the load average to settle.
"""


def report(
    runs: list[tuple[str, dict[str, Any]]], args: Any, command: str, section: str = ""
) -> str:
    worker = (
        f"{args.workers} sync workers"
        if args.threads == 1
        else f"{args.workers} gthread workers × {args.threads} threads"
    )
    postgres = runs[0][1]["postgres"]
    lines = [
        section or SECTION,
        "",
        INTRO,
        f"Measured {time.strftime('%Y-%m-%d')} on {machine()}; PostgreSQL {postgres}, Python "
        f"{platform.python_version()}, gunicorn with {worker} and "
        f"`{Path(args.gunicorn_config or 'gunicorn.conf.py').name}` (by default the code's own: "
        "JSON access log, as in production). "
        "Load from "
        f"{args.processes} processes × {args.threads_per_process} threads (plain sockets, a "
        "connection per request) on the "
        "same machine over loopback, so the load generator's CPU is part of every figure. "
        f"Seeded: {args.sequences} sequences, {args.contacts:,} enrolled contacts; "
        f"{args.duplicates:.0%} of deliveries are byte-identical re-deliveries; "
        f"{args.duration:.0f} s per phase. Latency at the fixed rate is measured from each "
        "request's scheduled send time. CPU per request is CPU time, and a webhook's includes "
        "applying it afterwards; other work on the machine slows the throughput figures but "
        "not these, so the last column (the machine's CPUs divided by the CPU one request "
        "costs) is what this machine would serve with nothing else running.",
        "",
        "Reproduce: `" + command + "`",
        "",
    ]
    for label, results in runs:
        lines += run_report(label, results, args)
    return "\n".join(lines)


def ceiling_share(flat: Tally, health: Tally) -> str:
    def rate(tally: Tally) -> float:
        return sum(tally.statuses.values()) / tally.elapsed

    share = rate(flat) / rate(health)
    return (
        f"Deliveries flat out are {share:.0%} of this server's `/health` ceiling. The target, "
        "700/s where a bare Django view answered 1,700/s, is 41% of that machine's ceiling "
        "(`/health` is heavier than a bare view, so this share flatters the receiver a little)."
    )


def run_report(label: str, results: dict[str, Any], args: Any) -> list[str]:
    flat, fixed, health = results["flat"], results["fixed"], results["health"]
    outcomes = Counter(results["flat_db"]["outcomes"]) + Counter(results["fixed_db"]["outcomes"])
    lines = [
        f"### {label}",
        "",
        f"1-minute load average before this run: {results['load_before']:.2f} "
        f"({os.cpu_count()} vCPU).",
        "",
        "| phase | requests | throughput | p50 | p99 | max | answers |",
        "|---|---|---|---|---|---|---|",
        row("`GET /health` flat out — the ceiling", health),
        row("webhooks flat out", flat),
        row(f"webhooks at a fixed {args.rate:.0f}/s", fixed),
        "",
        "| CPU per request | gunicorn processes | their Postgres backends | load generator "
        "| all CPUs ÷ that |",
        "|---|---|---|---|---|",
        cpu_row("`GET /health`", health, results["health_cpu"]),
        cpu_row("webhooks flat out", flat, results["flat_cpu"]),
        cpu_row(f"webhooks at {args.rate:.0f}/s", fixed, results["fixed_cpu"]),
        "",
        ceiling_share(flat, health),
        "",
        "| check | result | figures |",
        "|---|---|---|",
    ]
    lines += [
        f"| {name} | {'pass' if ok else '**FAIL**'} | {fig} |"
        for name, ok, fig in verdicts(results)
    ]
    lines += [
        "",
        "Outcomes of the stored events: "
        + ", ".join(f"{k} {n:,}" for k, n in sorted(outcomes.items()))
        + " (unmatched and ignored: the mix's unknown campaigns and leads, and "
        "CAMPAIGN_STATUS_CHANGED).",
        "",
    ]
    return lines


def write_section(text: str, section: str) -> None:
    """Replace our section of docs/PERFORMANCE.md (up to the next `## `), keeping the others."""
    current = DOC.read_text() if DOC.exists() else "# Performance\n"
    start = current.find(section + "\n")
    if start == -1:
        DOC.write_text(current.rstrip("\n") + "\n\n" + text)
        return
    following = re.search(r"^## ", current[start + len(section) :], re.MULTILINE)
    rest = current[start + len(section) + following.start() :] if following else ""
    DOC.write_text(current[:start] + text + ("\n" + rest if rest else ""))


# --- Main -----------------------------------------------------------------------------------


VARIANTS = {
    "hosted": [("Hosted schema as it is", False)],
    "proposed": [("With the two proposed indexes", True)],
    "both": [("Hosted schema as it is", False), ("With the two proposed indexes", True)],
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--dbname", default="outboundhq_bench_webhooks")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="gthread threads per worker")
    parser.add_argument(
        "--gunicorn-config",
        default="",
        help="the code's own (production) one by default; /dev/null for gunicorn's defaults",
    )
    parser.add_argument("--processes", type=int, default=2, help="load generator processes")
    parser.add_argument("--threads-per-process", type=int, default=8)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per phase")
    parser.add_argument("--rate", type=float, default=200.0, help="fixed-rate phase, per second")
    parser.add_argument("--max-requests", type=int, default=60_000, help="cap per phase")
    parser.add_argument("--duplicates", type=float, default=0.1)
    parser.add_argument("--sequences", type=int, default=40)
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument(
        "--indexes",
        choices=VARIANTS,
        default="both",
        help="run on the hosted schema as it is, with the proposed indexes, or both",
    )
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument(
        "--wait-quiet", type=float, default=0, help="minutes to wait for the load average to settle"
    )
    parser.add_argument("--quiet-below", type=float, default=0.5, help="what settled means")
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/PERFORMANCE.md")
    parser.add_argument(
        "--compare",
        metavar="REF",
        help="REF and this tree on the hosted schema, taking turns, with their ratios",
    )
    parser.add_argument("--rounds", type=int, default=2, help="turns of each version in --compare")
    return parser.parse_args()


def wait_until_quiet(limit: float, minutes: float) -> float:
    """Others may share this machine: wait (up to `minutes`) for the 1-minute load to settle."""
    deadline = time.monotonic() + minutes * 60
    while os.getloadavg()[0] > limit and time.monotonic() < deadline:
        time.sleep(5)
    return os.getloadavg()[0]


def main() -> None:
    args = parse_args()
    command = "scripts/setup && .venv/bin/python bench/webhooks.py" + "".join(
        f" {a}" for a in sys.argv[1:] if a != "--no-write"
    )
    if args.compare:
        runs, text = compare(args, command)
    else:
        runs = [(label, run_once(args, indexes, ROOT)) for label, indexes in VARIANTS[args.indexes]]
        text = report(runs, args, command)
    print(text)
    if not args.no_write:
        write_section(text, COMPARE_SECTION if args.compare else SECTION)
        print(f"Written to {DOC.relative_to(ROOT)}")
    if not all(ok for _, results in runs for _, ok, _ in verdicts(results)):
        sys.exit(1)


def compare(args: argparse.Namespace, command: str) -> tuple[list, str]:
    """The same phases for REF and for this tree, turn about, then each figure's ratio."""
    codes = [
        (versions.describe(args.compare), versions.checkout(args.compare)),
        ("this tree", ROOT),
    ]
    runs = []
    for n in range(args.rounds):
        for label, code in codes:
            runs.append((f"{label}, round {n + 1}", run_once(args, False, code)))
    text = report(runs, args, command, section=COMPARE_SECTION)
    before, after = runs[0::2], runs[1::2]
    lines = ["", "Ratios, this tree ÷ the compared version, each the median of the rounds:", ""]
    for name, figure in FIGURES.items():
        ratio = statistics.median(
            figure(a) / figure(b) for (_, a), (_, b) in zip(after, before, strict=True)
        )
        lines.append(f"- {name}: {ratio:.2f}×")
    return runs, text + "\n".join(lines) + "\n"


def throughput(tally: Tally) -> float:
    return sum(tally.statuses.values()) / tally.elapsed


def cpu_per_request(results: dict[str, Any], phase: str) -> float:
    cpu = results[f"{phase}_cpu"]
    return (cpu["server"] + cpu["postgres"]) / max(1, sum(results[phase].statuses.values()))


# What a before/after is judged on: higher is better for the first three, lower for the rest.
FIGURES = {
    "webhooks flat out, deliveries/s": lambda r: throughput(r["flat"]),
    "webhooks flat out as a share of /health's ceiling": lambda r: (
        throughput(r["flat"]) / throughput(r["health"])
    ),
    "/health flat out, requests/s": lambda r: throughput(r["health"]),
    "p99 at the fixed rate": lambda r: pct(r["fixed"].latencies, 0.99),
    "p50 at the fixed rate": lambda r: pct(r["fixed"].latencies, 0.5),
    "server + Postgres CPU per delivery, flat out": lambda r: cpu_per_request(r, "flat"),
}


def run_once(args: argparse.Namespace, proposed_indexes: bool, code: Path) -> dict[str, Any]:
    """One fresh database and server, the three phases, the checks; then both are gone."""
    load = wait_until_quiet(args.quiet_below, args.wait_quiet)
    print(f"1-minute load average before the run: {load:.2f}", flush=True)
    url = create_database(args.database_url, args.dbname)
    env = os.environ | {
        "DATABASE_URL": url,
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": keys.DJANGO_SECRET_KEY,
        "SMARTLEAD_KEY_ENCRYPTION_KEYS": keys.SMARTLEAD_KEY_ENCRYPTION_KEYS,
        "SMARTLEAD_WEBHOOK_SECRET": SECRET,
        "SMARTLEAD_WEBHOOK_SIGNING_SECRET": "",
        "LOG_LEVEL": "WARNING",
    }
    server = None
    try:
        migrate(env, code)
        shape = {"sequences": args.sequences, "contacts": args.contacts}
        seed(url, proposed_indexes=proposed_indexes, **shape)
        server = start_server(args, env, code)
        results = run_phases(args, url, server.pid)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        if not args.keep_db:
            drop_database(args.database_url, args.dbname)
    return results | {"load_before": load}


def run_phases(args: argparse.Namespace, url: str, server_pid: int) -> dict[str, Any]:
    path = f"/webhooks/smartlead?secret={SECRET}"
    shape = {"sequences": args.sequences, "contacts": args.contacts}
    results: dict[str, Any] = {}
    with psycopg.connect(url) as conn:
        results["postgres"] = conn.execute("SHOW server_version").fetchone()[0].split()[0]
    common = {"port": args.port, "duration": args.duration, "args": args}
    # Warm-up: every worker opens its database connection and imports everything.
    run_load(method="GET", path="/health", load=None, rate=0, **common | {"duration": 2.0})
    print("phase: /health flat out", flush=True)
    meter = CpuMeter(server_pid, url)
    results["health"] = run_load(method="GET", path="/health", load=None, rate=0, **common)
    results["health_cpu"] = meter.used()
    print("phase: webhooks flat out", flush=True)
    flat_plan = plan(1, args.max_requests, args.duplicates, **shape)
    meter = CpuMeter(server_pid, url)
    results["flat"] = run_load(method="POST", path=path, load=flat_plan, rate=0, **common)
    results["flat_drained"] = wait_applied(url)
    results["flat_cpu"] = meter.used()
    results["flat_db"] = check(url, results["flat"], flat_plan, since_id=0)
    print("phase: webhooks at a fixed rate", flush=True)
    count = min(args.max_requests, int(args.rate * args.duration) + 1)
    fixed_plan = plan(2, count, args.duplicates, **shape)
    meter = CpuMeter(server_pid, url)
    results["fixed"] = run_load(method="POST", path=path, load=fixed_plan, rate=args.rate, **common)
    results["fixed_drained"] = wait_applied(url)
    results["fixed_cpu"] = meter.used()
    since = results["flat_db"]["last_id"]
    results["fixed_db"] = check(url, results["fixed"], fixed_plan, since_id=since)
    distinct = flat_plan.distinct(results["flat"].answered)
    results["expected"] = expected_effects(
        distinct + fixed_plan.distinct(results["fixed"].answered)
    )
    return results


if __name__ == "__main__":
    main()
