"""Benchmark: one shared-out run on 1 and on N qcluster processes, on Redis and the ORM broker.

    .venv/bin/python bench/scale_out.py                       # 300 SDRs x 100, 1 and 3 processes
    .venv/bin/python bench/scale_out.py --brokers redis --clusters 1,2,3,4
    .venv/bin/python bench/scale_out.py --write docs/PERFORMANCE.md

Per broker it builds a scratch database, seeds one active sequence per SDR with `--per-sdr`
ready enrollments (campaigns already provisioned), serves the sandbox at `--latency-ms` per
request and deletes the schedules (so only the measured run works). Then, for each cluster count
in turn (`--repeat` rounds, the counts interleaved, after one untimed run), it starts that many
`manage.py qcluster` processes of one worker each, waits until they are all ready, and runs
`manage.py execute_sequences --fan-out` (steps 0-2 in the command, step 3 by the qclusters). The
run's time is its record's, start to close; the command's wall time, start-up included, is shown
beside it, and the CPU the run cost: the service's processes, Postgres and the sandbox (this
process), and how busy the machine was. It checks the work as well as the clock: every enrollment
pushed once, the minimum number of add-leads requests, no 429. The verdict is the ratio of N
processes to 1, measured in one run. `--write` records each size and latency in its own section.
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
from datetime import datetime
from pathlib import Path
from statistics import median

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.executor import (  # noqa: E402
    LEADS_ROUTE,
    accounts,
    create_campaigns,
    drop_database,
    environment,
    record_section,
    reset,
    scratch_database,
    seed,
)
from smartlead.sandbox import SandboxServer  # noqa: E402

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def prepare(broker: str, sdrs: int, per_sdr: int, batch: int, latency_ms: float):  # noqa: ANN201
    name = f"outboundhq_scale_{broker}_{sdrs}x{per_sdr}"
    url = scratch_database(name)
    sandbox = SandboxServer(accounts(sdrs), requests_per_minute=60).start()
    env = environment(url, sandbox) | {
        "SMARTLEAD_LEADS_PER_REQUEST": str(batch),
        "Q_WORKERS": "1",
        "Q_CLUSTER_NAME": f"bench-{uuid.uuid4().hex[:8]}",
        "LOG_LEVEL": "INFO",
    }
    if broker == "redis":
        env["REDIS_URL"] = REDIS_URL
    else:
        env.pop("REDIS_URL", None)
    manage(env, "migrate", "--no-input", "-v0")
    keys = [a["api_key"] for a in accounts(sdrs)]
    seed(url, keys, create_campaigns(sandbox, keys), per_sdr)
    manage(env, "encrypt_smartlead_keys")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM django_q_schedule")  # only the measured run works
    sandbox.latency = latency_ms / 1000
    return name, url, sandbox, env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )


def start_clusters(count: int, env: dict[str, str], logs: Path) -> list[subprocess.Popen]:
    procs, files = [], []
    for n in range(count):
        log = logs / f"qcluster-{n}.log"
        with log.open("w") as out:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "manage.py", "qcluster"],
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        files.append(log)
    deadline = time.monotonic() + 60
    while not all("ready for work" in f.read_text() for f in files):
        if time.monotonic() > deadline:
            raise SystemExit(f"qclusters not ready: {[f.read_text()[-500:] for f in files]}")
        time.sleep(0.1)
    return procs


def stop_clusters(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(10)


def ticks() -> dict[str, float]:
    """CPU seconds so far: the machine's busy and total time (/proc/stat), every Postgres
    process (with the backends that already exited, counted on the postmaster), and this
    process (the sandbox's threads)."""
    hz = os.sysconf("SC_CLK_TCK")
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]
    postgres = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        name, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :]
        if name.startswith("postgres"):
            values = rest.split()
            # utime, stime, cutime, cstime (fields 14-17 of proc(5))
            postgres += sum(int(v) for v in values[11:15])
    own = os.times()
    return {
        "machine_total": sum(fields) / hz,
        "machine_busy": (sum(fields) - idle) / hz,
        "postgres": postgres / hz,
        "sandbox": own.user + own.system,
        "service": own.children_user + own.children_system,
    }


def cluster_cpu(procs: list[subprocess.Popen]) -> float:
    """CPU seconds of the qcluster processes (each a process group) so far."""
    groups, total = {p.pid for p in procs}, 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            values = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(values[2]) in groups:  # pgrp (field 5)
            total += sum(int(v) for v in values[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def timed_run(
    env: dict[str, str], sandbox: SandboxServer, url: str, procs: list[subprocess.Popen]
) -> dict:
    sandbox.reset_counts()
    before, clusters_before = ticks(), cluster_cpu(procs)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "manage.py", "execute_sequences", "--fan-out", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    wall = time.perf_counter() - started
    after = {k: v - before[k] for k, v in ticks().items()}
    cpu = {
        "service": after["service"] + cluster_cpu(procs) - clusters_before,
        "postgres": after["postgres"],
        "sandbox": after["sandbox"],
        "busy": after["machine_busy"] / after["machine_total"],
    }
    if done.returncode != 0:
        raise SystemExit(f"the run failed:\n{done.stderr[-3000:]}")
    record = json.loads(done.stdout)
    # The run itself, from its record: the command's own start-up (a new interpreter, Django's
    # checks) is the same whatever the number of processes, so it is reported apart.
    duration = (
        datetime.fromisoformat(record["finished_at"]) - datetime.fromisoformat(record["started_at"])
    ).total_seconds()
    with psycopg.connect(url) as conn:
        rows, once, again = conn.execute(
            "SELECT count(*), count(DISTINCT enrollment_id), "
            "count(*) FILTER (WHERE attempts > 1) FROM outboundhq_push WHERE state = 'pushed'"
        ).fetchone()
    return {
        "wall": wall,
        "duration": duration,
        "cpu": cpu,
        "record": record,
        "requests": sandbox.request_count(route=LEADS_ROUTE),
        "http_429": sandbox.request_count(status=429),
        "pushed_rows": rows,
        "pushed_once": once,
        "sent_twice": again,
    }


def run(args: argparse.Namespace, broker: str, logs: Path) -> list[dict]:
    counts = [int(c) for c in args.clusters.split(",")]
    name, url, sandbox, env = prepare(broker, args.sdrs, args.per_sdr, args.batch, args.latency_ms)
    measured: dict[int, list[dict]] = {n: [] for n in counts}
    try:
        for round_ in range(args.repeat + 1):
            for n in counts[: 1 if round_ == 0 else None]:
                reset(url)
                procs = start_clusters(n, env, logs)
                try:
                    result = timed_run(env, sandbox, url, procs) | {"load": os.getloadavg()[0]}
                finally:
                    stop_clusters(procs)
                if round_ == 0:
                    continue  # untimed: each key's first check is recorded once, in this run
                measured[n].append(result)
                print(
                    f"{broker} round {round_}: {n} process(es) run {result['duration']:.2f} s, "
                    f"command {result['wall']:.2f} s, machine CPU {result['cpu']['busy']:.0%}",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        sandbox.stop()
        drop_database(name)
    total = args.sdrs * args.per_sdr
    minimum = args.sdrs * math.ceil(args.per_sdr / args.batch)
    results = []
    for n, runs in measured.items():
        last = runs[-1]
        results.append(
            {
                "broker": broker,
                "processes": n,
                "run_s": round(median(r["duration"] for r in runs), 2),
                "all_runs_s": [round(r["duration"], 2) for r in runs],
                "wall_s": round(median(r["wall"] for r in runs), 2),
                "cpu_s": {
                    part: round(median(r["cpu"][part] for r in runs), 1)
                    for part in ("service", "postgres", "sandbox")
                },
                "machine_busy": round(median(r["cpu"]["busy"] for r in runs), 2),
                "tasks": last["record"]["tasks"],
                "workers": last["record"]["workers"],
                "requests": last["requests"],
                "minimum_requests": minimum,
                "http_429": max(r["http_429"] for r in runs),
                "pushed": last["pushed_rows"],
                "enrollments": total,
                "sent_twice": max(r["sent_twice"] for r in runs),
                "loads": [round(r["load"], 2) for r in runs],
            }
        )
        assert last["pushed_rows"] == last["pushed_once"] == total, last
    return results


def table(results: list[dict], latency_ms: float) -> str:
    rows = [
        "| broker | qcluster processes | run, median (all) | ratio to 1 | command wall (ratio) "
        "| CPU s: service, Postgres, sandbox | machine CPU busy | floor (ratio) | tasks | workers "
        "that took SDRs | add-leads requests (minimum) | leads reserved twice | 429s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    threads = int(os.environ.get("EXECUTOR_CONCURRENCY", 8))
    for r in results:
        one = next(x for x in results if x["broker"] == r["broker"] and x["processes"] == 1)
        floor = r["requests"] * latency_ms / 1000 / (threads * r["processes"])
        cpu = r["cpu_s"]
        rows.append(
            f"| {r['broker']} | {r['processes']} | **{r['run_s']} s** "
            f"({', '.join(map(str, r['all_runs_s']))}) | **{r['run_s'] / one['run_s']:.2f}×** "
            f"| {r['wall_s']} s ({r['wall_s'] / one['wall_s']:.2f}×) "
            f"| {cpu['service']}, {cpu['postgres']}, {cpu['sandbox']} "
            f"| {r['machine_busy']:.0%} | {floor:.2f} s ({r['run_s'] / floor:.1f}×) "
            f"| {r['tasks']} | {r['workers']} | {r['requests']:,} ({r['minimum_requests']:,}) "
            f"| {r['sent_twice']} | {r['http_429']} |"
        )
    return "\n".join(rows)


def write_section(path: Path, args: argparse.Namespace, results: list[dict]) -> None:
    body = (
        f"Measured {time.strftime('%Y-%m-%d')} on this machine ({os.cpu_count()} "
        f"cores): {args.sdrs} SDRs × {args.per_sdr} ready enrollments, sandbox latency "
        f"{args.latency_ms:.0f} ms, batch {args.batch}, each qcluster one worker process of "
        f"EXECUTOR_CONCURRENCY {os.environ.get('EXECUTOR_CONCURRENCY', 8)} threads, "
        f"EXECUTOR_SDRS_PER_TASK {os.environ.get('EXECUTOR_SDRS_PER_TASK', 25)}. Run: the "
        "run record's start to its close (steps 0-3); command wall: `execute_sequences "
        "--fan-out` as a process, with its start-up. CPU: of the whole run, by part. Floor: "
        "add-leads requests × latency ÷ (processes × threads).\n\n"
        + table(results, args.latency_ms)
    )
    label = f"{args.sdrs}x{args.per_sdr} at {args.latency_ms:.0f} ms"
    record_section(path, f"scale-out-bench {label}", body, heading="## Scale-out")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdrs", type=int, default=300)
    parser.add_argument("--per-sdr", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--clusters", default="1,3", help="qcluster process counts to compare")
    parser.add_argument("--brokers", default="redis,orm")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--write", type=Path, help="record the results in this file")
    args = parser.parse_args()
    logs = ROOT / "bench" / "results" / "scale_out"
    logs.mkdir(parents=True, exist_ok=True)
    results = []
    for broker in args.brokers.split(","):
        for result in run(args, broker, logs):
            print(json.dumps(result), flush=True)
            results.append(result)
    print(table(results, args.latency_ms))
    if args.write:
        write_section(args.write, args, results)


if __name__ == "__main__":
    main()
