"""The APScheduler 3.11 peer of the kairos benchmark suite (benches/compare/run.sh).

The same workloads as kairos's benches/{burst,pending,recurring,next_fire_time}.rs and
the tokio-cron-scheduler twin in benches/compare/tcs; one JSON line on stdout per run.
Lateness is measured the same way everywhere: the job reads the wall clock when it
starts, lateness = start - the time the run was scheduled for.

Fairest configuration we found for APScheduler 3: BackgroundScheduler, a
ThreadPoolExecutor with 64 workers (kairos uses 16), misfire_grace_time=None,
coalesce=False and a high max_instances so that no run is dropped by policy. The
scheduler is started paused while jobs are added, so each add really reaches the store
(before start() APScheduler only queues it in a list) without waking the scheduler
thread for every job; it is resumed once adding is done. Stores: MemoryJobStore, or
SQLAlchemyJobStore on a fresh SQLite file or fresh PostgreSQL table (psycopg2).

Usage:
  apscheduler_peer.py burst JOBS WINDOW_S LEAD_S STORE
  apscheduler_peer.py pending JOBS DAYS IDLE_S ADD_BUDGET_S
  apscheduler_peer.py restart FILE JOBS
  apscheduler_peer.py recurring JOBS INTERVAL_S WINDOW_S LEAD_S STORE
  apscheduler_peer.py cron [REPEATS]
STORE: memory, sqlite, or a postgres:// URL.
"""

import json
import math
import os
import pickle
import resource
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.util import datetime_to_utc_timestamp

import apscheduler

SYSTEM = "apscheduler-" + ".".join(apscheduler.__version__.split(".")[:2])
WORKERS = 64
MAX_INSTANCES = 1000

# What the jobs record; module-level so jobs in an SQL store pickle by reference.
LOCK = threading.Lock()
LATENESS_MS = []
RUNS = {}


def record(scheduled_ts):
    """A one-off job: lateness against its own scheduled time."""
    late = (time.time() - scheduled_ts) * 1000.0
    with LOCK:
        LATENESS_MS.append(late)


def record_recurring(index, first_ts, interval, runs_per_job):
    """A recurring job: its n-th run is due at first + n * interval (no run is skipped:
    coalesce=False and no misfire limit), so it counts its runs."""
    now = time.time()
    with LOCK:
        n = RUNS.get(index, 0)
        RUNS[index] = n + 1
        if n < runs_per_job:
            LATENESS_MS.append((now - (first_ts + n * interval)) * 1000.0)


def noop():
    pass


def rss_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_ms():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (usage.ru_utime + usage.ru_stime) * 1000.0


def percentile(values, fraction):
    if not values:
        return float("nan")
    index = round((len(values) - 1) * fraction)
    return values[min(index, len(values) - 1)]


def lateness_json(values):
    off = sorted(abs(value) for value in values)
    values = sorted(values)
    return {
        "abs_p99": percentile(off, 0.99),
        "p50": percentile(values, 0.50),
        "p99": percentile(values, 0.99),
        "max": values[-1] if values else float("nan"),
        "min": values[0] if values else float("nan"),
    }


class Store:
    """The job store a run is measured on, and its cleanup."""

    def __init__(self, spec):
        self.kind = "memory"
        self.path = None
        self.table = None
        self.store = None
        if spec == "memory":
            self.store = MemoryJobStore()
            return
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

        if spec == "sqlite":
            self.kind = "sqlite"
            handle, self.path = tempfile.mkstemp(prefix="aps-bench-", suffix=".db")
            os.close(handle)
            os.unlink(self.path)
            self.store = SQLAlchemyJobStore(url="sqlite:///" + self.path)
        elif spec.startswith("postgres"):
            self.kind = "postgresql"
            url = "postgresql+psycopg2://" + spec.split("://", 1)[1]
            self.table = "aps_bench_" + uuid.uuid4().hex[:8]
            self.store = SQLAlchemyJobStore(url=url, tablename=self.table)
        else:
            raise SystemExit("unknown store " + spec)

    def cleanup(self):
        if self.path:
            for suffix in ("", "-journal", "-wal", "-shm"):
                try:
                    os.unlink(self.path + suffix)
                except FileNotFoundError:
                    pass
        if self.table:
            self.store.jobs_t.drop(self.store.engine, checkfirst=True)
            self.store.engine.dispose()


def scheduler_for(store):
    return BackgroundScheduler(
        jobstores={"default": store},
        executors={"default": ThreadPoolExecutor(WORKERS)},
        job_defaults={
            "misfire_grace_time": None,
            "coalesce": False,
            "max_instances": MAX_INSTANCES,
        },
        timezone=timezone.utc,
    )


def wait_for(count, deadline):
    while time.monotonic() < deadline:
        with LOCK:
            if len(LATENESS_MS) >= count:
                return
        time.sleep(0.05)


def burst(jobs, window, lead, store_spec):
    store = Store(store_spec)
    scheduler = scheduler_for(store.store)
    scheduler.start(paused=True)
    first = datetime.now(timezone.utc) + timedelta(seconds=lead)
    spacing = window / jobs
    # The inputs exist before timing starts, as in the Rust twins.
    run_dates = [first + timedelta(seconds=index * spacing) for index in range(jobs)]
    baseline = rss_kib()
    started = time.perf_counter()
    for run_date in run_dates:
        scheduler.add_job(record, "date", run_date=run_date, args=[run_date.timestamp()])
    add_seconds = time.perf_counter() - started
    pending = rss_kib()
    late_adds = datetime.now(timezone.utc) > first
    scheduler.resume()
    wait_for(jobs, time.monotonic() + max(0.0, (first - datetime.now(timezone.utc)).total_seconds()) + window + 10.0)
    time.sleep(0.2)
    with LOCK:
        lateness = list(LATENESS_MS)
    scheduler.shutdown(wait=False)
    store.cleanup()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "system": SYSTEM,
        "workload": "burst",
        "store": store.kind,
        "jobs": jobs,
        "window_s": window,
        "lead_s": lead,
        "add_per_s": jobs / add_seconds,
        "fired": len(lateness),
        "lost": jobs - min(len(lateness), jobs),
        "lateness_ms": lateness_json(lateness),
        "bytes_per_pending_job": (pending - baseline) * 1024 / jobs,
        "peak_rss_mib": peak_kib / 1024.0,
        "adding_overran_window_start": late_adds,
    }


def pending(jobs, days, idle, budget):
    scheduler = scheduler_for(MemoryJobStore())
    scheduler.start(paused=True)
    # Due over the next `days`, the first in an hour, in due order (an order's cancel
    # falls a fixed time after the order).
    base = datetime.now(timezone.utc) + timedelta(hours=1)
    spacing = days * 86400.0 / jobs
    run_dates = [base + timedelta(seconds=index * spacing) for index in range(jobs)]
    baseline = rss_kib()
    started = time.perf_counter()
    added = 0
    for run_date in run_dates:
        scheduler.add_job(noop, "date", run_date=run_date)
        added += 1
        if added % 10000 == 0 and time.perf_counter() - started > budget:
            break
    add_seconds = time.perf_counter() - started
    del run_dates
    pending_kib = rss_kib()
    scheduler.resume()
    time.sleep(1.0)
    before = cpu_ms()
    watched = time.monotonic()
    time.sleep(idle)
    cpu = cpu_ms() - before
    watched = time.monotonic() - watched
    scheduler.shutdown(wait=False)
    return {
        "system": SYSTEM,
        "workload": "pending",
        "store": "memory",
        "jobs": jobs,
        "added": added,
        "capped": added < jobs,
        "add_per_s": added / add_seconds,
        "bytes_per_pending_job": (pending_kib - baseline) * 1024 / added,
        "rss_mib": pending_kib / 1024.0,
        "idle_s": watched,
        "idle_cpu_ms": cpu,
        "idle_cpu_percent": cpu / (watched * 1000.0) * 100.0,
    }


def fill(path, jobs):
    """Fills an SQLAlchemyJobStore SQLite file with `jobs` pending one-off jobs.

    add_job commits one row at a time; a million of those would take most of an hour,
    so the rows are written in bulk in one transaction, each exactly as add_job writes
    it (the job's own __getstate__, pickled with the store's protocol)."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    store = SQLAlchemyJobStore(url="sqlite:///" + path)
    scheduler = scheduler_for(store)
    scheduler.start(paused=True)
    base = datetime.now(timezone.utc) + timedelta(hours=1)
    template = scheduler.add_job(noop, "date", run_date=base, id="template")
    state = store.lookup_job(template.id).__getstate__()
    store.remove_job(template.id)
    spacing = 30 * 86400.0 / jobs
    with store.engine.begin() as connection:
        rows = []
        for index in range(jobs):
            run_date = base + timedelta(seconds=index * spacing)
            state["id"] = "pending-%d" % index
            state["trigger"] = DateTrigger(run_date=run_date, timezone=timezone.utc)
            state["next_run_time"] = run_date
            rows.append({
                "id": state["id"],
                "next_run_time": datetime_to_utc_timestamp(run_date),
                "job_state": pickle.dumps(state, store.pickle_protocol),
            })
            if len(rows) == 10000:
                connection.execute(store.jobs_t.insert(), rows)
                rows = []
        if rows:
            connection.execute(store.jobs_t.insert(), rows)
    scheduler.shutdown(wait=False)
    store.engine.dispose()


def restart(path, jobs):
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    fill_s = None
    if not os.path.exists(path):
        started = time.perf_counter()
        fill(path, jobs)
        fill_s = time.perf_counter() - started
    started = time.perf_counter()
    store = SQLAlchemyJobStore(url="sqlite:///" + path)
    scheduler = scheduler_for(store)
    scheduler.start()
    first = store.get_next_run_time()
    restart_ms = (time.perf_counter() - started) * 1000.0
    rss = rss_kib()
    scheduler.shutdown(wait=False)
    if first is None:
        raise SystemExit("the pending jobs did not survive the restart")
    return {
        "system": SYSTEM,
        "workload": "restart",
        "store": "sqlite",
        "jobs": jobs,
        "fill_s": fill_s,
        "restart_ms": restart_ms,
        "rss_after_restart_mib": rss / 1024.0,
    }


def recurring(jobs, interval, window, lead, store_spec):
    store = Store(store_spec)
    scheduler = scheduler_for(store.store)
    scheduler.start(paused=True)
    runs_per_job = window // interval
    first_ts = math.floor(time.time() + lead) + 1.0
    first = datetime.fromtimestamp(first_ts, timezone.utc)
    end_ts = first_ts + runs_per_job * interval
    started = time.perf_counter()
    for index in range(jobs):
        scheduler.add_job(
            record_recurring, "interval", seconds=interval, start_date=first,
            args=[index, first_ts, interval, runs_per_job], id="r%d" % index,
        )
    add_seconds = time.perf_counter() - started
    late_adds = time.time() > first_ts
    scheduler.resume()
    time.sleep(max(0.0, first_ts - time.time()))
    before = cpu_ms()
    watched = time.monotonic()
    expected = jobs * runs_per_job
    while True:
        now = time.time()
        with LOCK:
            counted = len(LATENESS_MS)
        if now >= end_ts + 10 or (now >= end_ts and counted >= expected):
            break
        time.sleep(0.1)
    cpu = cpu_ms() - before
    watched = time.monotonic() - watched
    scheduler.pause()
    with LOCK:
        lateness = list(LATENESS_MS)
    scheduler.shutdown(wait=False)
    store.cleanup()
    return {
        "system": SYSTEM,
        "workload": "recurring",
        "store": store.kind,
        "jobs": jobs,
        "interval_s": interval,
        "window_s": window,
        "add_per_s": jobs / add_seconds,
        "adding_overran_first_fire": late_adds,
        "expected_runs": expected,
        "fired": len(lateness),
        "lost": expected - min(len(lateness), expected),
        "lateness_ms": lateness_json(lateness),
        "cpu_ms": cpu,
        "cpu_percent": cpu / (watched * 1000.0) * 100.0,
    }


# The groups of benches/next_fire_time.rs, as APScheduler CronTriggers. Note that
# APScheduler 3 numbers days of the week from Monday = 0, so `1-5` is written mon-fri.
CRON_CASES = [
    ("every_minute", dict(minute="*")),
    ("weekdays_9-17_every_15min", dict(minute="*/15", hour="9-17", day_of_week="mon-fri")),
    ("hour=3", dict(hour=3)),
    ("monthly_1st", dict(day=1)),
    ("day=last_fri", dict(day="last fri")),
    ("month=2_day=29", dict(month=2, day=29)),
    ("year=2099", dict(year=2099)),
    ("second=every_10s", dict(second="*/10")),
]


def start_instants():
    """The 64 instants of next_fire_time.rs's start_instants(), the same LCG."""
    base = datetime(2024, 1, 1, tzinfo=timezone.utc)
    span = 3 * 365 * 86400
    state = 0x2545F4914F6CDD1D
    instants = []
    for _ in range(64):
        state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        instants.append(base + timedelta(seconds=(state >> 33) % span))
    return instants


def cron(repeats):
    """ns per CronTrigger.get_next_fire_time(None, now): the best of `repeats` timed
    loops over the 64 start instants (the median is printed too)."""
    instants = start_instants()
    groups = {}
    for group, fields in CRON_CASES:
        trigger = CronTrigger(timezone=timezone.utc, **fields)
        per_call = []
        loops = 20
        for _ in range(repeats):
            started = time.perf_counter()
            for _ in range(loops):
                for instant in instants:
                    trigger.get_next_fire_time(None, instant)
            per_call.append((time.perf_counter() - started) * 1e9 / (loops * len(instants)))
        per_call.sort()
        groups[group] = {"median_ns": per_call[len(per_call) // 2], "min_ns": per_call[0]}
    return {"system": SYSTEM, "workload": "cron", "groups": groups}


def main():
    args = sys.argv[1:]
    if not args:
        raise SystemExit(__doc__)
    workload, rest = args[0], args[1:]
    if workload == "burst":
        result = burst(int(rest[0]), float(rest[1]), float(rest[2]), rest[3])
    elif workload == "pending":
        result = pending(int(rest[0]), int(rest[1]), float(rest[2]), float(rest[3]))
    elif workload == "restart":
        result = restart(rest[0], int(rest[1]))
    elif workload == "recurring":
        result = recurring(int(rest[0]), int(rest[1]), int(rest[2]), float(rest[3]), rest[4])
    elif workload == "cron":
        result = cron(int(rest[0]) if rest else 7)
    else:
        raise SystemExit(__doc__)
    print(json.dumps(result), flush=True)
    # Worker threads of a paused or shut-down scheduler must not hold the exit.
    os._exit(0)


if __name__ == "__main__":
    main()
