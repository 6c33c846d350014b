"""Benchmark: the ops dashboard (`/admin/dashboard/`) on 200,000 enrollments on Postgres.

    .venv/bin/python bench/dashboard.py                          # 1,000 SDRs × 200, 50 loads
    .venv/bin/python bench/dashboard.py --write docs/PERFORMANCE.md   # the same, recorded

It builds a scratch database (dropped afterwards) and seeds it with bench/executor.py's
set-based `seed` (profiles, provisioned sequences, contacts, enrollments), then a week of what
the dashboard reads: executor runs every 15 minutes, webhook events, credential checks, and
enrollments spread over waiting, due and finished. A logged-in staff Django test client then
loads the dashboard with its one-minute cache emptied first (a cold load: every figure's query
runs), the dashboard again within the minute (warm: what most loads are), and a bare Django view
(the same middleware, no query) for the ratio, the three taking turns in the same run; p50/p95
of each, and each figure's query on its own.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import keys  # noqa: E402
from bench.executor import drop_database, scratch_database, seed  # noqa: E402

NAME = "outboundhq_bench_dashboard"
TARGET_MS = 300
WEEK_OF_RUNS = 7 * 24 * 4  # the 15-minute schedule


def seed_week(database_url: str, events: int) -> None:
    """What a week leaves in the tables the dashboard reads, in a few INSERT … SELECTs."""
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        # Enrollments: a fifth finished, the rest due over the last few days or the next few.
        cur.execute(
            "UPDATE sequence_enrollments SET status = CASE WHEN random() < 0.2 "
            "THEN 'completed' ELSE 'active' END, "
            "next_send_at = now() + (random() * 6 - 3) * interval '1 day'"
        )
        cur.execute(
            "INSERT INTO outboundhq_executor_run (id, trigger, dry_run, started_at, finished_at, "
            "due, pushed, skipped_no_credentials, failed, call_tasks, completed, advanced, "
            "deferred, campaigns_provisioned, smartlead_requests, skipped, errors) "
            "SELECT gen_random_uuid(), 'schedule', false, now() - n * interval '15 minutes', "
            "now() - n * interval '15 minutes' + interval '20 seconds', 300, 280, 10, 5, 3, 2, "
            "280, 5, 0, 3, '{\"bounced\": 4}', '[]' FROM generate_series(1, %s) n",
            [WEEK_OF_RUNS],
        )
        cur.execute(
            "INSERT INTO smartlead_webhook_event (received_at, last_received_at, deliveries, "
            "dedupe_key, event_type, campaign_id, lead_email, sequence_number, stats_id, "
            "outcome, detail, attempts, headers, raw_body) "
            "SELECT t, t, 1, 'bench-' || n, (ARRAY['EMAIL_SENT', 'EMAIL_OPEN', 'EMAIL_REPLY', "
            "'EMAIL_LINK_CLICK', 'EMAIL_BOUNCE'])[1 + n %% 5], 500000 + n %% 1000, "
            "'lead' || n || '@prospect.test', 1, 'stats-' || n, "
            "(ARRAY['applied', 'applied', 'applied', 'unmatched', 'failed'])[1 + n / 5 %% 5], "
            "'', 1, '{}', '{}' FROM (SELECT n, now() - random() * interval '8 days' t "
            "FROM generate_series(1, %s) n) e",
            [events],
        )
        cur.execute(
            "INSERT INTO outboundhq_credential_check (profile_id, status, ok, detail, "
            "key_fingerprint, checked_at) SELECT id, CASE WHEN random() < 0.9 THEN 'connected' "
            "ELSE 'invalid_key' END, true, '', '', now() FROM profiles"
        )
        cur.execute("UPDATE outboundhq_credential_check SET ok = (status = 'connected')")
        cur.execute("ANALYZE")


def prepare(sdrs: int, per_sdr: int, events: int) -> str:
    database_url = scratch_database(NAME)
    os.environ.update(
        DATABASE_URL=database_url,
        DJANGO_SECRET_KEY=keys.DJANGO_SECRET_KEY,
        SMARTLEAD_KEY_ENCRYPTION_KEYS=keys.SMARTLEAD_KEY_ENCRYPTION_KEYS,
        DJANGO_DEBUG="false",
        DJANGO_ALLOWED_HOSTS="testserver",
        DJANGO_SECURE_SSL_REDIRECT="false",
        LOG_LEVEL="WARNING",
    )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "outboundhq.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", "--no-input", verbosity=0)
    api_keys = [f"bench-key-{n:05d}-abcdef" for n in range(sdrs)]
    seed(database_url, api_keys, [900_000 + n for n in range(sdrs)], per_sdr)
    seed_week(database_url, events)
    return database_url


def timings(get: Callable[[], object], loads: int) -> list[float]:
    out = []
    for _ in range(loads):
        started = time.perf_counter()
        get()
        out.append((time.perf_counter() - started) * 1000)
    return out


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(name: str, values: list[float]) -> dict[str, float]:
    return {
        f"{name}_p50_ms": round(statistics.median(values), 1),
        f"{name}_p95_ms": round(percentile(values, 95), 1),
    }


def measure(loads: int) -> dict:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.db import connection
    from django.http import HttpRequest, HttpResponse
    from django.test import Client
    from django.test.utils import override_settings
    from django.urls import include, path
    from django.utils import timezone

    from outboundhq import dashboard

    def bare(request: HttpRequest) -> HttpResponse:
        return HttpResponse("ok")

    # The bare view sits in the same URLconf, behind the same middleware as the dashboard.
    urlconf = type(
        "Urls", (), {"urlpatterns": [path("bare/", bare), path("", include(settings.ROOT_URLCONF))]}
    )
    staff = get_user_model().objects.create_superuser("bench", "bench@example.test", "x")
    client = Client()
    client.force_login(staff)
    # Production serves the admin's files from collectstatic's manifest; the bench has none.
    plain = settings.STORAGES | {
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    }
    with override_settings(ROOT_URLCONF=urlconf, STORAGES=plain):

        def load_dashboard() -> None:
            response = client.get("/admin/dashboard/")
            assert response.status_code == 200, response.status_code

        def load_bare() -> None:
            assert client.get("/bare/").status_code == 200

        timings(load_dashboard, 3)  # templates compiled, connection open
        timings(load_bare, 3)
        cold, warm, floor = [], [], []
        for _ in range(loads):  # turn about, so load on the machine hits all three alike
            cache.clear()
            cold += timings(load_dashboard, 1)
            warm += timings(load_dashboard, 1)
            floor += timings(load_bare, 1)
    now = timezone.now()
    since = now - dashboard.WINDOW
    figures = {
        "runs": lambda: dashboard.run_figures(since),
        "webhooks": lambda: dashboard.webhook_figures(since),
        "credentials": dashboard.credential_figures,
        "waiting": lambda: dashboard.waiting_figures(now),
    }
    per_figure = {
        name: round(statistics.median(timings(figure, 11)), 1) for name, figure in figures.items()
    }
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM sequence_enrollments")
        enrollments = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM smartlead_webhook_event")
        events = cur.fetchone()[0]
    return {
        "enrollments": enrollments,
        "webhook_events": events,
        "loads": loads,
        **summary("cold", cold),
        **summary("warm", warm),
        **summary("bare", floor),
        "ratio_cold_p50": round(statistics.median(cold) / statistics.median(floor), 1),
        "per_figure_ms": per_figure,
        "cores": os.cpu_count(),
        "load_after": round(os.getloadavg()[0], 2),
    }


def section(r: dict) -> str:
    begin, end = "<!-- dashboard-bench:begin -->", "<!-- dashboard-bench:end -->"
    figures = ", ".join(f"{name} {ms} ms" for name, ms in r["per_figure_ms"].items())
    rows = [
        ("`/admin/dashboard/`, cold (figures computed)", "cold"),
        ("`/admin/dashboard/`, within the minute (figures kept)", "warm"),
        ("bare Django view (same middleware, no query)", "bare"),
    ]
    lines = [
        "| page | p50 | p95 | < 300 ms at p95 |",
        "|---|---|---|---|",
        *(
            f"| {label} | **{r[f'{k}_p50_ms']} ms** | **{r[f'{k}_p95_ms']} ms** "
            f"| {'met' if r[f'{k}_p95_ms'] < TARGET_MS else '**not met**'} |"
            for label, k in rows
        ),
    ]
    return (
        f"{begin}\nMeasured {time.strftime('%Y-%m-%d')} on this machine ({r['cores']} cores, "
        f"1-minute load {r['load_after']} after), Postgres 127.0.0.1, {r['enrollments']:,} "
        f"enrollments, {r['webhook_events']:,} webhook events; {r['loads']} loads of each, "
        "the three taking turns.\n\n"
        + "\n".join(lines)
        + f"\n\nCold dashboard ÷ bare view at p50: {r['ratio_cold_p50']}×. Each figure's "
        f"query alone (median of 11): {figures}.\n{end}"
    )


def write_section(path: Path, r: dict) -> None:
    begin, end = "<!-- dashboard-bench:begin -->", "<!-- dashboard-bench:end -->"
    text = path.read_text()
    if begin in text:
        text = text[: text.index(begin)] + section(r) + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n## Ops dashboard\n\n" + section(r) + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdrs", type=int, default=1000)
    parser.add_argument("--per-sdr", type=int, default=200)
    parser.add_argument("--events", type=int, default=100_000, help="webhook events, 8 days")
    parser.add_argument("--loads", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--write", type=Path, help="record the result in this file")
    args = parser.parse_args()
    try:
        prepare(args.sdrs, args.per_sdr, args.events)
        result = measure(args.loads)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            drop_database(NAME)
    print(json.dumps(result))
    print(section(result))
    if args.write:
        write_section(args.write, result)


if __name__ == "__main__":
    main()
