"""Benchmark: one shared-out run on 1 and on N qcluster processes, on Redis and the ORM broker.

    .venv/bin/python bench/scale_out.py                       # 300 SDRs x 100, 1 and 3 processes
    .venv/bin/python bench/scale_out.py --brokers redis --clusters 1,2,3,4
    .venv/bin/python bench/scale_out.py --write docs/PERFORMANCE.md

Per broker it builds a scratch database, seeds one active sequence per SDR with `--per-sdr`
ready enrollments (campaigns already provisioned), serves the sandbox at `--latency-ms` per
request and deletes the schedules (so only the measured run works). Then, for each cluster count
in turn (`--repeat` rounds, the counts interleaved), it starts that many `manage.py qcluster`
processes of one worker each, waits until they are all ready, and times `manage.py
execute_sequences --fan-out` from its start until the run is closed (steps 0-2 in the command,
step 3 by the qclusters). It checks the work as well as the clock: every enrollment pushed once
(no lead sent twice), the minimum number of add-leads requests, no 429. The verdict is the ratio
of N processes to 1, measured in one run.
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


def timed_run(env: dict[str, str], sandbox: SandboxServer, url: str) -> dict:
    sandbox.reset_counts()
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
    if done.returncode != 0:
        raise SystemExit(f"the run failed:\n{done.stderr[-3000:]}")
    record = json.loads(done.stdout)
    with psycopg.connect(url) as conn:
        rows, once, again = conn.execute(
            "SELECT count(*), count(DISTINCT enrollment_id), "
            "count(*) FILTER (WHERE attempts > 1) FROM outboundhq_push WHERE state = 'pushed'"
        ).fetchone()
    return {
        "wall": wall,
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
        for round_ in range(args.repeat):
            for n in counts:
                reset(url)
                procs = start_clusters(n, env, logs)
                try:
                    measured[n].append(timed_run(env, sandbox, url) | {"load": os.getloadavg()[0]})
                finally:
                    stop_clusters(procs)
                print(
                    f"{broker} round {round_ + 1}: {n} process(es) {measured[n][-1]['wall']:.2f} s",
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
        walls = sorted(r["wall"] for r in runs)
        last = runs[-1]
        results.append(
            {
                "broker": broker,
                "processes": n,
                "wall_s": round(median(walls), 2),
                "all_walls_s": [round(r["wall"], 2) for r in runs],
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
        "| broker | qcluster processes | wall, median (all runs) | ratio to 1 | tasks | workers "
        "that took SDRs | add-leads requests (minimum) | leads sent twice | 429s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        one = next(x for x in results if x["broker"] == r["broker"] and x["processes"] == 1)
        rows.append(
            f"| {r['broker']} | {r['processes']} | **{r['wall_s']} s** "
            f"({', '.join(map(str, r['all_walls_s']))}) | {r['wall_s'] / one['wall_s']:.2f}× "
            f"| {r['tasks']} | {r['workers']} | {r['requests']:,} ({r['minimum_requests']:,}) "
            f"| {r['sent_twice']} | {r['http_429']} |"
        )
    return "\n".join(rows)


def write_section(path: Path, args: argparse.Namespace, results: list[dict]) -> None:
    begin, end = "<!-- scale-out-bench:begin -->", "<!-- scale-out-bench:end -->"
    body = (
        f"{begin}\nMeasured {time.strftime('%Y-%m-%d')} on this machine ({os.cpu_count()} "
        f"cores): {args.sdrs} SDRs × {args.per_sdr} ready enrollments, sandbox latency "
        f"{args.latency_ms:.0f} ms, batch {args.batch}, each qcluster one worker process of "
        f"EXECUTOR_CONCURRENCY {os.environ.get('EXECUTOR_CONCURRENCY', 8)} threads, "
        f"EXECUTOR_SDRS_PER_TASK {os.environ.get('EXECUTOR_SDRS_PER_TASK', 25)}. Wall: "
        "`execute_sequences --fan-out` from its start to the run's close.\n\n"
        + table(results, args.latency_ms)
        + f"\n{end}"
    )
    text = path.read_text()
    if begin in text:
        text = text[: text.index(begin)] + body + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n## Scale-out\n\n" + body + "\n"
    path.write_text(text)


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
