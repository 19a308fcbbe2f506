"""The invocation list, the dashboard and the metrics pages with many rows: page times, in-process.

    .venv/bin/python bench/invocation_pages.py [--rows 1000000] [--repeats 7] [--keep] [--compact]

Seeds a throwaway SQLite database (.run/bench-pages/db.sqlite3, migrated fresh) with `--rows` invocation
rows over 4 functions of one user (a second user's function holds a tenth of them), with a realistic mix:
90 % succeeded, 7 % failed, 2 % timed out, 1 % throttled; 5 % cold; sources console, http, schedule and
queue; a short log of three lines of which 1 in 1000 mentions "needle"; and their per-minute rollups
(rebuild_rollups). Then it times GET /invocations/… (and the live tail's JSON and one detail page), the
dashboard and the metrics and costs pages through Django's test client (URL routing, the view, the
queries, the template), each case `--repeats` times after one warm-up, and prints p50, the slowest run
and the query plan of each case's last query on the invocation rows (the rollup pages make none).
No Redis or worker is needed. No assertions: this prints a table. With --compact it first merges the
rollups older than 48 hours into hour rows (compact_rollups, as the event-source runners do hourly; this
changes a kept database for good).
"""

import argparse
import os
import random
import shutil
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT / ".run" / "bench-pages"
os.environ["LAMBDA_DATA_DIR"] = str(DATA)
os.environ["DATABASE_URL"] = f"sqlite:///{DATA / 'db.sqlite3'}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.test import override_settings  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from functions.models import CodeArtifact, Function  # noqa: E402
from invocations.metrics.compaction import compact  # noqa: E402
from invocations.metrics.models import DurationBucket, MinuteRollup  # noqa: E402
from invocations.metrics.rollups import rebuild  # noqa: E402
from invocations.models import Invocation  # noqa: E402

BATCH = 20000
STATUSES = ["SUCCEEDED"] * 90 + ["FAILED"] * 7 + ["TIMED_OUT"] * 2 + ["THROTTLED"]
SOURCES = ["console"] * 2 + ["http"] * 4 + ["schedule"] * 1 + ["queue"] * 3


def seed(rows):
    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir(parents=True)
    call_command("migrate", verbosity=0)
    alice = User.objects.create_user("alice", password="x")
    bob = User.objects.create_user("bob", password="x")
    artifact = CodeArtifact.objects.create(sha256="0" * 64, size=1, unzipped_size=1, files=[])
    functions = [Function.objects.create(owner=alice, name=f"fn{n}", runtime="python3.11",
                                         handler="lambda_function.handler", code=artifact) for n in range(4)]
    functions.append(Function.objects.create(owner=bob, name="bobs", runtime="python3.11",
                                             handler="lambda_function.handler", code=artifact))
    rng = random.Random(7)
    start = timezone.now() - timedelta(days=30)
    step = timedelta(days=30) / rows
    made = 0
    while made < rows:
        batch = []
        for n in range(made, min(rows, made + BATCH)):
            created = start + step * n
            status = rng.choice(STATUSES)
            cold = rng.random() < 0.05
            rid = uuid.UUID(int=rng.getrandbits(128))
            word = "needle" if rng.random() < 0.001 else "haystack"
            batch.append(Invocation(
                id=rid, function=functions[4 if n % 10 == 9 else n % 4],
                version="$LATEST" if n % 3 else "1", qualifier="" if n % 3 else "live",
                source=rng.choice(SOURCES), status=status, config={}, event='{"n": %d}' % n,
                result="{}", log=f"START RequestId: {rid}\nprocessing {word} {n}\nEND RequestId: {rid}\n",
                cold_start=cold, duration_ms=rng.randint(1, 900), billed_duration_ms=rng.randint(1, 900),
                memory_size_mb=128, created_at=created, started_at=created, finished_at=created,
                error_type="Error" if status == "FAILED" else "",
            ))
        with transaction.atomic():
            Invocation.objects.bulk_create(batch)
        made += len(batch)
        print(f"\rseeded {made:,} rows", end="", flush=True)
    print()
    began = time.perf_counter()
    # As the workers would have kept them; with retention off, every minute is rebuilt from the rows.
    with override_settings(INVOCATION_RETENTION_DAYS=0):
        written = rebuild()
    print(f"rebuilt {written:,} minute rollups in {time.perf_counter() - began:.0f} s")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def day_ago(days):
    return (timezone.now() - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M")


def cases():
    deep = Invocation.objects.filter(function__name="fn0").order_by("-created_at", "-id")[
        Invocation.objects.filter(function__name="fn0").count() * 9 // 10]
    cursor = f"{deep.created_at.isoformat()}_{deep.id.hex}"
    last = Invocation.objects.filter(function__name="fn0").order_by("-finished_at", "-id")[5]
    tail = "/invocations/tail/fn0/lines/"
    return [
        ("all functions, first page", {}),
        ("one function, first page", {"function": "fn0"}),
        ("one function, a page 90 % deep (keyset)", {"function": "fn0", "before": cursor}),
        ("all functions, a page 90 % deep (keyset)", {"before": cursor}),
        ("status=FAILED", {"function": "fn0", "status": "FAILED"}),
        ("status=THROTTLED, all functions", {"status": "THROTTLED"}),
        ("cold starts", {"function": "fn0", "start": "cold"}),
        ("source=schedule", {"function": "fn0", "source": "schedule"}),
        ("version or alias = live", {"function": "fn0", "qualifier": "live"}),
        ("time range (one day)", {"function": "fn0", "since": day_ago(10), "until": day_ago(9)}),
        ("log text 'needle' (1 in 1000)", {"function": "fn0", "q": "needle"}),
        ("log text, no match (whole scan)", {"function": "fn0", "q": "no such text"}),
        ("live tail, first poll (latest 20)", {}, tail),
        ("live tail, poll after a cursor (5 new)", {"after": f"{last.finished_at.isoformat()}_{last.id.hex}"}, tail),
        ("invocation detail", {}, deep.get_absolute_url()),
        ("dashboard, 24 h", {}, "/"),
        ("dashboard, 30 d", {"window": "30d"}, "/"),
        ("metrics, all functions, 24 h", {"window": "24h"}, "/metrics/"),
        ("metrics, all functions, 30 d", {"window": "30d"}, "/metrics/"),
        ("metrics, one function, 30 d", {"window": "30d"}, "/metrics/functions/fn0/"),
        ("costs, this month", {}, "/metrics/costs/"),
    ]


def plan(client, path, query):
    with CaptureQueriesContext(connection) as captured:
        client.get(path, query)
    sql = [q["sql"] for q in captured.captured_queries if 'FROM "invocations_invocation"' in q["sql"]]
    if not sql:
        return "no query on invocation rows"
    sql = sql[-1]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + sql)
        return "; ".join(row[-1] for row in cursor.fetchall())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="reuse a database seeded with --keep before")
    parser.add_argument("--compact", action="store_true", help="merge rollups older than 48 h into hours first")
    args = parser.parse_args()
    if not (args.keep and (DATA / "db.sqlite3").exists()):
        began = time.perf_counter()
        seed(args.rows)
        print(f"seeding took {time.perf_counter() - began:.0f} s")
    else:
        call_command("migrate", verbosity=0)  # a database kept from before newer migrations
    if args.compact:
        began = time.perf_counter()
        merged, _ = compact()
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        print(f"compacted {merged:,} function-hours in {time.perf_counter() - began:.1f} s "
              f"({MinuteRollup.objects.count():,} rollup rows, {DurationBucket.objects.count():,} histogram rows left)")
    rows = Invocation.objects.count()
    client = Client(HTTP_HOST="localhost")  # one of ALLOWED_HOSTS by default
    client.force_login(User.objects.get(username="alice"))
    print(f"\n{rows:,} rows; GETs through the test client, {args.repeats} runs after a warm-up\n")
    print(f"{'case':45} {'p50 ms':>9} {'max ms':>9}  plan")
    for name, query, *path in cases():
        path = path[0] if path else "/invocations/"
        response = client.get(path, query)
        assert response.status_code == 200, (name, response.status_code)
        times = []
        for _ in range(args.repeats):
            began = time.perf_counter()
            client.get(path, query)
            times.append((time.perf_counter() - began) * 1000)
        print(f"{name:45} {statistics.median(times):9.1f} {max(times):9.1f}  {plan(client, path, query)}")


if __name__ == "__main__":
    main()
