"""The burst workload on APScheduler 3.11, the twin of benches/burst.rs.

N one-off date jobs spread evenly over W seconds, starting five seconds after the
script starts adding; each job records (wall clock at start - scheduled time).
Prints one JSON line like the Rust bench.

Fairest configuration we found for APScheduler 3: BackgroundScheduler, MemoryJobStore,
ThreadPoolExecutor with 16 workers (same as kairos), misfire_grace_time=None and
coalesce=False so that no job is dropped by policy, jobs added before start() so that
each add does not wake the scheduler thread.

Usage: python apscheduler_burst.py [JOBS] [SECONDS]
"""

import json
import resource
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler


def rss_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def percentile(values, fraction):
    if not values:
        return float("nan")
    index = round((len(values) - 1) * fraction)
    return values[min(index, len(values) - 1)]


def main():
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    lateness_ms = []
    lock = threading.Lock()

    def record(scheduled):
        late = (datetime.now(timezone.utc) - scheduled).total_seconds() * 1000.0
        with lock:
            lateness_ms.append(late)

    scheduler = BackgroundScheduler(
        jobstores={"default": MemoryJobStore()},
        executors={"default": ThreadPoolExecutor(16)},
        job_defaults={"misfire_grace_time": None, "coalesce": False, "max_instances": 1},
        timezone=timezone.utc,
    )
    first = datetime.now(timezone.utc) + timedelta(seconds=5)
    spacing = seconds / jobs
    # The inputs exist before timing starts, as in the Rust twin.
    run_dates = [first + timedelta(seconds=index * spacing) for index in range(jobs)]
    baseline = rss_kib()
    started = time.perf_counter()
    for run_date in run_dates:
        scheduler.add_job(record, "date", run_date=run_date, args=[run_date])
    add_seconds = time.perf_counter() - started
    pending = rss_kib()
    late_adds = datetime.now(timezone.utc) > first
    scheduler.start()
    deadline = time.monotonic() + seconds + 10.0
    while time.monotonic() < deadline:
        with lock:
            if len(lateness_ms) >= jobs:
                break
        time.sleep(0.05)
    time.sleep(0.2)
    scheduler.shutdown(wait=True)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    lateness_ms.sort()
    print(json.dumps({
        "system": "apscheduler-3.11",
        "jobs": jobs,
        "window_s": seconds,
        "add_per_s": jobs / add_seconds,
        "fired": len(lateness_ms),
        "lost": jobs - len(lateness_ms),
        "lateness_ms": {
            "p50": percentile(lateness_ms, 0.50),
            "p99": percentile(lateness_ms, 0.99),
            "max": lateness_ms[-1] if lateness_ms else float("nan"),
            "min": lateness_ms[0] if lateness_ms else float("nan"),
        },
        "bytes_per_pending_job": (pending - baseline) * 1024 / jobs,
        "peak_rss_mib": peak_kib / 1024.0,
        "adding_overran_window_start": late_adds,
    }))


if __name__ == "__main__":
    main()
