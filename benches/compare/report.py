"""Writes BENCHMARKS.md from the JSON lines of benches/compare/run.sh.

Every figure is the median over rounds with its range (min-max); ratios are kairos /
peer on medians. A peer that lost jobs, was capped or could not finish is noted in the
cell. The hand-written closing analysis, benches/compare/closing.md, is appended as is.

Usage: report.py --results FILE --mode full|quick --out FILE --criterion DIR
                 --postgres 0|1 --pg-url URL --pending-budget S [--load-start "a b c"]
"""

import argparse
import json
import os
import platform
import re
import sqlite3
import statistics
import subprocess
import sys
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
KAIROS = "kairos"
APS = "apscheduler-3.11"
TCS = "tokio-cron-scheduler-0.15"
NAMES = {KAIROS: "kairos", APS: "APScheduler 3.11", TCS: "tokio-cron-scheduler 0.15"}


def sh(*command, cwd=REPO):
    try:
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ram_gib():
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return float("nan")


def locked_version(lock, name):
    try:
        text = open(lock).read()
    except OSError:
        return "unknown"
    match = re.search(r'name = "%s"\nversion = "([^"]+)"' % re.escape(name), text)
    return match.group(1) if match else "unknown"


def postgres_version(url, enabled):
    if not enabled:
        return "not reachable (PostgreSQL workloads skipped)"
    try:
        import psycopg2

        with psycopg2.connect(url) as connection, connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            return cursor.fetchone()[0]
    except Exception as error:  # noqa: BLE001 - the page says what went wrong
        return "unknown (%s)" % error


def fmt(value):
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    magnitude = abs(value)
    if magnitude >= 1000:
        return "{:,.0f}".format(value)
    if magnitude >= 100:
        return "%.0f" % value
    if magnitude >= 10:
        return "%.1f" % value
    if magnitude >= 1:
        return "%.2f" % value
    if magnitude == 0:
        return "0"
    return "%.3g" % value


def ratio(ours, peer, better):
    if ours is None or peer is None or ours != ours or peer != peer:
        return "–"
    if peer <= 0 or ours < 0:
        return "n/a"
    if ours == 0:
        return "0× ✓" if better == "lower" else "0×"
    value = ours / peer
    text = ("%.3g×" % value)
    good = value <= 1 if better == "lower" else value >= 1
    return text + (" ✓" if good else " ✗")


class Runs:
    def __init__(self, path):
        self.runs = []
        for line in open(path):
            line = line.strip()
            if line:
                self.runs.append(json.loads(line))

    def select(self, workload, store=None, jobs=None):
        chosen = [r for r in self.runs if r.get("workload") == workload
                  and (store is None or r.get("store") == store)
                  and (jobs is None or r.get("jobs") in (None, jobs) or r.get("failed"))]
        by_system = {}
        for run in chosen:
            by_system.setdefault(run["system"], []).append(run)
        return by_system


def pick(run, path):
    value = run
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def table(by_system, metrics, notes_for=None):
    """metrics: (label, path, better) with better 'lower', 'higher' or None."""
    systems = [s for s in (KAIROS, APS, TCS) if s in by_system]
    peers = [s for s in systems if s != KAIROS]
    lines = ["| metric | " + " | ".join(NAMES[s] for s in systems) + "".join(
        " | kairos / %s" % NAMES[p].split(" ")[0] for p in peers) + " |",
        "| --- " * (1 + len(systems) + len(peers)) + "|"]
    medians = {}
    for label, path, better in metrics:
        cells = []
        for system in systems:
            values = [pick(r, path) for r in by_system[system] if not r.get("failed")]
            values = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if not values:
                cells.append("could not finish" if any(r.get("failed") for r in by_system[system]) else "–")
                medians[(system, path)] = None
                continue
            median = statistics.median(values)
            medians[(system, path)] = median
            cell = fmt(median)
            if len(values) > 1:
                cell += " (%s–%s)" % (fmt(min(values)), fmt(max(values)))
            cells.append(cell)
        ratios = [ratio(medians[(KAIROS, path)], medians[(p, path)], better) if better and KAIROS in systems else "–"
                  for p in peers]
        lines.append("| %s | %s |" % (label, " | ".join(cells + ratios)))
    notes = []
    for system in systems:
        runs = by_system[system]
        failed = [r for r in runs if r.get("failed")]
        if failed:
            notes.append("%s could not finish %d of %d rounds (%s)." % (
                NAMES[system], len(failed), len(runs), "; ".join(sorted({r["failed"] for r in failed}))))
        ok = [r for r in runs if not r.get("failed")]
        lost = [r.get("lost", 0) for r in ok if r.get("lost")]
        if lost:
            notes.append("%s lost jobs in %d of %d rounds (up to %s of %s runs never started)." % (
                NAMES[system], len(lost), len(ok), fmt(max(lost)),
                fmt(ok[0].get("expected_runs", ok[0].get("jobs")))))
        capped = [r for r in ok if r.get("capped")]
        if capped:
            notes.append("%s did not finish adding within the time budget: capped at %s of %s jobs "
                         "(its per-job figures are for that many)." % (
                             NAMES[system], fmt(min(r["added"] for r in capped)), fmt(capped[0]["jobs"])))
        overran = [r for r in ok if r.get("adding_overran_window_start") or r.get("adding_overran_first_fire")]
        if overran:
            notes.append("%s was still adding when the first job fell due in %d of %d rounds, "
                         "so its early jobs started late by that much." % (NAMES[system], len(overran), len(ok)))
        if notes_for:
            notes.extend(notes_for(system, ok))
    rounds = max((len(v) for v in by_system.values()), default=0)
    out = "\n".join(lines) + "\n"
    out += "\nMedian (min–max) over %d round%s per system. " % (rounds, "" if rounds == 1 else "s")
    out += "Ratios compare medians; ✓ marks kairos ahead of that peer. "
    out += measured_note([r for runs in by_system.values() for r in runs]) + "\n"
    if notes:
        out += "\n" + "\n".join("- " + n for n in notes) + "\n"
    return out, medians


# What lines written before runs were stamped come from.
UNSTAMPED = "in the full run of 2026-11-24 04:43–05:19 UTC (kairos 9d280cc, Intel Xeon, 2 cores)"


def measured_note(runs):
    """When, where and on which commit the runs of a table were measured."""
    stamps = sorted({(r["measured"]["date"][:10], r["measured"]["cpu"], r["measured"]["commit"])
                     for r in runs if r.get("measured")})
    parts = ["%s on %s (kairos %s)" % stamp for stamp in stamps]
    if any(not r.get("measured") for r in runs):
        parts.append(UNSTAMPED)
    loads = [float(r["measured"]["load"]) for r in runs if r.get("measured", {}).get("load")]
    busy = " Load average up to %s during these runs (other work on the machine)." % fmt(max(loads)) \
        if loads and max(loads) > 1.0 else ""
    return "Measured " + "; ".join(parts) + "." + busy


def early_note(system, runs):
    if system == TCS and any((pick(r, "lateness_ms.min") or 0) < -1 for r in runs):
        worst = min(pick(r, "lateness_ms.min") for r in runs)
        return ["tokio-cron-scheduler keeps due times in whole seconds and scans every 500 ms: its jobs "
                "started up to %s ms *early* (negative lateness), so compare |lateness| p99." % fmt(-worst)]
    return []


LATENESS = [
    ("lateness p50 (ms)", "lateness_ms.p50", "lower"),
    ("lateness p99 (ms)", "lateness_ms.p99", "lower"),
    ("lateness max (ms)", "lateness_ms.max", "lower"),
    ("\\|lateness\\| p99 (ms)", "lateness_ms.abs_p99", "lower"),
    ("earliest start (ms)", "lateness_ms.min", None),
]


def criterion_medians(directory):
    found = {}
    if not os.path.isdir(directory):
        return found
    for group in sorted(os.listdir(directory)):
        for function in ("kairos", "cron", "croner"):
            path = os.path.join(directory, group, function, "new", "estimates.json")
            if os.path.exists(path):
                found.setdefault(group, {})[function] = json.load(open(path))["median"]["point_estimate"]
    return found


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--criterion-line":
        # run.sh: criterion's medians as one result line.
        print(json.dumps({"system": KAIROS, "workload": "criterion", "medians": criterion_medians(sys.argv[2]),
                          "measured": {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                                       "cpu": os.environ.get("stamp_cpu", cpu_model()),
                                       "commit": os.environ.get("stamp_commit", "?")}}))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", required=True)
    parser.add_argument("--mode", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--criterion", required=True)
    parser.add_argument("--postgres", default="0")
    parser.add_argument("--pg-url", default="")
    parser.add_argument("--pending-budget", default="300")
    parser.add_argument("--load-start", default="")
    parser.add_argument("--load-end", default="", help="the load when the runs ended (default: now)")
    args = parser.parse_args()
    runs = Runs(args.results)

    import apscheduler
    import sqlalchemy

    # The commit the results were measured at, as each line says (run.sh stamps it
    # before it writes anything); the working tree now always differs, by this page.
    stamps = sorted({pick(run, "measured.commit") for run in runs.runs} - {None})
    if not stamps:
        stamps = [sh("git", "rev-parse", "--short", "HEAD") + "?"]
    commit = ", ".join(
        "commit %s (with uncommitted changes)" % stamp[: -len("+changes")]
        if stamp.endswith("+changes") else "commit %s" % stamp
        for stamp in stamps)
    if len(stamps) > 1:
        commit += " (each table says which)"
    page = []
    w = page.append
    w("# Benchmarks\n")
    w("kairos next to APScheduler 3.11 and tokio-cron-scheduler 0.15, run side by side on the same "
      "machine in the same run: each workload runs on kairos, then APScheduler, then "
      "tokio-cron-scheduler, and again for every round. Written by `./benches/compare/run.sh%s` "
      "(%s run); the raw JSON lines of every run are in `benches/compare/results-%s.jsonl`.\n"
      % (" --quick" if args.mode == "quick" else "", args.mode, args.mode))
    w("## Machine and versions\n")
    load_end = args.load_end or " ".join(open("/proc/loadavg").read().split()[:3])
    w("| | |\n| --- | --- |")
    w("| page written | %s |" % datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    w("| CPU | %s, %d cores |" % (cpu_model(), os.cpu_count() or 0))
    w("| RAM | %.1f GiB |" % ram_gib())
    w("| kernel | %s |" % platform.release())
    w("| load average (1, 5, 15 min) | at start %s; at end %s |" % (args.load_start or "?", load_end))
    w("| rustc | %s |" % sh("rustc", "--version"))
    w("| kairos | %s |" % commit)
    w("| Python | %s |" % platform.python_version())
    w("| APScheduler | %s (SQLAlchemy %s, SQLite %s) |" % (apscheduler.__version__, sqlalchemy.__version__, sqlite3.sqlite_version))
    w("| tokio-cron-scheduler | %s |" % locked_version(os.path.join(HERE, "tcs", "Cargo.lock"), "tokio-cron-scheduler"))
    w("| kairos's SQLite | libsqlite3-sys %s (bundled) |" % locked_version(os.path.join(REPO, "Cargo.lock"), "libsqlite3-sys"))
    w("| PostgreSQL | %s |" % postgres_version(args.pg_url, args.postgres == "1"))
    w("")
    w("> A page may gather workloads from several runs (`run.sh --only …` re-runs some and keeps the "
      "others' lines): each table says when, on which CPU and at which kairos commit it was measured. "
      "Within a table the systems always ran in the same run, in alternation.\n")
    if args.load_start and float(args.load_start.split()[0]) > 1.0:
        w("> The machine was not quiet: other work was running (load average above). Lateness and CPU "
          "figures carry that noise for every system alike, since the systems alternate.\n")

    summary_at = len(page)

    w("## Burst\n")
    w("N one-off jobs spread evenly over W seconds on the memory store, the first due a few seconds "
      "after adding starts (the lead). Add rate: jobs added one by one per second. Lateness: the job "
      "reads the wall clock when it starts; lateness = start − scheduled time.\n")
    summary = {}
    burst_sizes = sorted({r.get("jobs") for r in runs.runs if r.get("workload") == "burst" and r.get("store") == "memory" and r.get("jobs")})
    for jobs in burst_sizes:
        by_system = runs.select("burst", "memory", jobs)
        sample = next(r for rs in by_system.values() for r in rs if not r.get("failed"))
        w("### %s jobs over %s s (lead %s s)\n" % (fmt(jobs), fmt(sample["window_s"]), fmt(sample.get("lead_s"))))
        text, medians = table(by_system, [("add rate (jobs/s)", "add_per_s", "higher")] + LATENESS + [
            ("jobs lost", "lost", "lower"),
            ("memory per pending job (bytes of RSS)", "bytes_per_pending_job", "lower"),
            ("peak RSS (MiB)", "peak_rss_mib", "lower"),
        ], early_note)
        w(text)
        summary["burst-%d" % jobs] = medians

    w("## Order-cancel at scale\n")
    pend = runs.select("pending", "memory")
    if pend:
        sample = next(r for rs in pend.values() for r in rs if not r.get("failed"))
        w("%s pending one-off jobs due over the next 30 days (one cancel job per order, due a fixed time "
          "after the order, so added one by one in due order), on each system's memory store; then the "
          "process is watched for %s s while it holds them. Adding stops at a budget of %s s (checked "
          "every 10,000 adds).\n" % (fmt(sample["jobs"]), fmt(round(sample["idle_s"])), args.pending_budget))
        text, medians = table(pend, [
            ("add rate (jobs/s)", "add_per_s", "higher"),
            ("memory per pending job (bytes of RSS)", "bytes_per_pending_job", "lower"),
            ("RSS holding them (MiB)", "rss_mib", "lower"),
            ("idle CPU (% of a core)", "idle_cpu_percent", "lower"),
            ("idle CPU (ms over the watch)", "idle_cpu_ms", "lower"),
        ])
        w(text)
        summary["pending"] = medians
    rest = runs.select("restart", "sqlite")
    if rest:
        sample = next(r for rs in rest.values() for r in rs if not r.get("failed"))
        w("### Restart on SQLite with %s pending jobs\n" % fmt(sample["jobs"]))
        w("Each system's SQLite store is filled once with the same jobs (kairos: `Scheduler::add_jobs` in "
          "batches of 10,000; APScheduler: rows written in one transaction exactly as `add_job` writes them, "
          "since one commit per job would take most of an hour), then each round times a restart in a fresh "
          "process: open the store (schema checked), start the scheduler, read the first next run time. "
          "tokio-cron-scheduler has no SQLite store.\n")
        text, medians = table(rest, [
            ("restart (ms)", "restart_ms", "lower"),
            ("RSS after restart (MiB)", "rss_after_restart_mib", "lower"),
            ("fill, first round only (s)", "fill_s", None),
        ])
        w(text)
        summary["restart"] = medians

    w("## Recurring\n")
    rec = runs.select("recurring", "memory")
    if rec:
        sample = next(r for rs in rec.values() for r in rs if not r.get("failed"))
        w("%s interval jobs, all firing every %s s on the same grid, watched for %s s. A run counts when it "
          "was scheduled inside the window; one not started 10 s after the window is lost. CPU: the "
          "process's CPU time over the window. kairos and APScheduler take a common start date on a whole "
          "second; tokio-cron-scheduler cannot be given one (its jobs start one interval after each was "
          "added, in whole seconds), and its jobs count their runs from the first tick it reports.\n"
          % (fmt(sample["jobs"]), sample["interval_s"], sample["window_s"]))
        text, medians = table(rec, LATENESS + [
            ("runs lost", "lost", "lower"),
            ("CPU (% of a core)", "cpu_percent", "lower"),
            ("add rate (jobs/s)", "add_per_s", "higher"),
        ], early_note)
        w(text)
        summary["recurring"] = medians

    w("## Persistent stores\n")
    aps_sqlite_adds = [r["add_per_s"] for r in runs.runs if r.get("system") == APS and r.get("store") == "sqlite"
                       and r.get("workload") in ("burst", "recurring") and not r.get("failed")]
    w("The burst and recurring workloads on SQLite (a fresh file per run) and PostgreSQL (fresh tables per "
      "run), against APScheduler's SQLAlchemyJobStore on the same database. Smaller sizes than on the "
      "memory store: APScheduler's SQLAlchemy store commits every add on its own (%s adds/s on SQLite "
      "in this run), so 10,000 jobs would need most of a minute before the first could be due, and "
      "every system gets the same lead.\n" % (fmt(statistics.median(aps_sqlite_adds)) if aps_sqlite_adds else "a few hundred"))
    w("tokio-cron-scheduler is not in these tables: its PostgreSQL store (`postgres_storage`) pulls in "
      "`prost-build`, which needs the `protoc` compiler installed on the system, outside what this suite "
      "fetches (PyPI and crates.io only); it has no SQLite store.\n")
    if args.postgres != "1":
        w("PostgreSQL did not answer at run time: only SQLite was measured.\n")
    for store in ("sqlite", "postgresql"):
        burst = runs.select("burst", store)
        if burst:
            sample = next(r for rs in burst.values() for r in rs if not r.get("failed"))
            w("### Burst on %s: %s jobs over %s s (lead %s s)\n" % (
                "SQLite" if store == "sqlite" else "PostgreSQL", fmt(sample["jobs"]), fmt(sample["window_s"]), fmt(sample["lead_s"])))
            text, medians = table(burst, [("add rate (jobs/s)", "add_per_s", "higher")] + LATENESS[:4] + [
                ("jobs lost", "lost", "lower")])
            w(text)
            summary["burst-" + store] = medians
        rec = runs.select("recurring", store)
        if rec:
            sample = next(r for rs in rec.values() for r in rs if not r.get("failed"))
            w("### Recurring on %s: %s jobs every %s s for %s s\n" % (
                "SQLite" if store == "sqlite" else "PostgreSQL", fmt(sample["jobs"]), sample["interval_s"], sample["window_s"]))
            text, medians = table(rec, LATENESS[:4] + [
                ("runs lost", "lost", "lower"),
                ("CPU (% of a core)", "cpu_percent", "lower"),
                ("add rate (jobs/s)", "add_per_s", "higher")])
            w(text)
            summary["recurring-" + store] = medians

    w("## Cron next fire time\n")
    stored = [r for r in runs.runs if r.get("workload") == "criterion" and r.get("medians")]
    crit = stored[-1]["medians"] if stored else criterion_medians(args.criterion)
    aps_cron = next((r for r in runs.runs if r.get("workload") == "cron" and not r.get("failed")), None)
    if crit or aps_cron:
        w("Time per \"first fire time at or after `from`\" computation, `from` rotating through the same 64 "
          "instants over 2024–2026. kairos, `cron` 0.17 and `croner` 3: criterion medians from "
          "`benches/next_fire_time.rs` (which first checks that all give the same fire times). "
          "APScheduler: `CronTrigger.get_next_fire_time(None, from)` timed in Python over the same 64 "
          "instants, median of the timed loops. Lower is better; ratios are kairos / peer.\n")
        w("| expression | kairos (ns) | cron (ns) | croner (ns) | APScheduler (ns) | kairos / cron | kairos / croner | kairos / APScheduler |")
        w("| --- | --- | --- | --- | --- | --- | --- | --- |")
        groups = [g for g in crit if g not in ("iterate_1000", "parse")] or list((aps_cron or {}).get("groups", {}))
        for group in groups:
            ours = crit.get(group, {}).get("kairos")
            cron_ns = crit.get(group, {}).get("cron")
            croner_ns = crit.get(group, {}).get("croner")
            aps_ns = ((aps_cron or {}).get("groups", {}).get(group) or {}).get("median_ns")
            w("| `%s` | %s | %s | %s | %s | %s | %s | %s |" % (
                group, fmt(ours), fmt(cron_ns) if cron_ns else "no `L`/`#`" if group == "day=last_fri" else "–",
                fmt(croner_ns), fmt(aps_ns), ratio(ours, cron_ns, "lower"), ratio(ours, croner_ns, "lower"),
                ratio(ours, aps_ns, "lower")))
        w("")
        w(measured_note([r for r in (aps_cron, stored[-1] if stored else None) if r]) + "\n")
        summary["cron"] = {g: (crit.get(g, {}).get("kairos"), ((aps_cron or {}).get("groups", {}).get(g) or {}).get("median_ns")) for g in groups}
    else:
        w("Not run.\n")

    w("## HTTP add rate\n")
    w("32 clients on this machine each `POST /jobs` one one-off job after another (an order-cancel job due "
      "in 2099) for a fixed time; the figure is created jobs per second and the request latency. kairos is "
      "the real daemon (`benches/http_adds.rs` starts it on a fresh SQLite file or fresh PostgreSQL "
      "tables). APScheduler has no HTTP API: its peer is the small server an order service would write, "
      "the standard library's `ThreadingHTTPServer` calling `scheduler.add_job` on a started "
      "`BackgroundScheduler` with the SQLAlchemy store on the same database "
      "(`benches/compare/apscheduler_http_peer.py`), driven by the same clients (`http_adds --external`). "
      "tokio-cron-scheduler has no HTTP API and no SQL store we can build here (see below).\n")
    for store in ("sqlite", "postgresql"):
        http = runs.select("http", store)
        if http:
            w("### HTTP adds on %s\n" % ("SQLite" if store == "sqlite" else "PostgreSQL"))
            text, medians = table(http, [
                ("jobs added per second", "adds_per_s", "higher"),
                ("request latency p50 (ms)", "p50_ms", "lower"),
                ("request latency p99 (ms)", "p99_ms", "lower"),
                ("failed requests", "errors", "lower"),
            ])
            w(text)
            summary["http-" + store] = medians
    if not any(runs.select("http", store) for store in ("sqlite", "postgresql")):
        w("Not run.\n")

    w("## One-at-a-time durable adds\n")
    w("A lone caller adds one one-off job and waits until it is committed, then the next: an order "
      "service without concurrency. Each add needs one durable commit, so the machine's bound is one "
      "such commit per add, measured by `benches/durable_adds.rs` in the same run, on the same storage or "
      "server. SQLite: overwrite a 4 KiB page in place in a preallocated file beside the SQLite files and "
      "`fsync` it (one WAL frame, committed as the bundled SQLite commits its WAL under `synchronous = "
      "FULL`, in the WAL's steady state); appending 128 bytes and `fsync`ing is shown too, slower because "
      "each append changes the file's size. PostgreSQL: single-row `INSERT`s on a trivial table (BIGINT "
      "key, short text), each its own commit, over one connection to the same server. kairos, on fresh "
      "SQLite files or fresh tables: `JobStore::add_job` (the store as the library opens it), "
      "`Scheduler::add_job` on a started scheduler (its own store), and the real `kairos run` daemon with "
      "one HTTP client `POST`ing one job after another. The bound and the three take turns in half-second "
      "slices, the same total time each, so the machine's changing load falls on all alike. Ratios are "
      "kairos / bound within each round; the table gives their median (min–max) over rounds. Target: at "
      "least 0.8× the bound.\n")
    durable_paths = [("store", "`JobStore::add_job`"), ("scheduler", "`Scheduler::add_job`"),
                     ("http", "HTTP, one client")]

    def spread(values):
        values = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if not values:
            return None, "–"
        median = statistics.median(values)
        text = fmt(median)
        if len(values) > 1:
            text += " (%s–%s)" % (fmt(min(values)), fmt(max(values)))
        return median, text

    any_durable = False
    for store in ("sqlite", "postgresql"):
        durable = runs.select("durable", store).get(KAIROS, [])
        ok = [r for r in durable if not r.get("failed")]
        if not durable:
            continue
        any_durable = True
        w("### Durable adds on %s\n" % ("SQLite" if store == "sqlite" else "PostgreSQL"))
        if not ok:
            w("Could not finish (%s).\n" % "; ".join(sorted({r["failed"] for r in durable})))
            continue
        w("| path | adds/s | per add p50 (µs) | kairos / bound | target |")
        w("| --- | --- | --- | --- | --- |")
        _, bound_text = spread([r.get("bound_per_s") for r in ok])
        _, bound_p50 = spread([r.get("bound_p50_us") for r in ok])
        w("| bound: %s | %s | %s | 1 | – |" % (ok[0].get("bound", "one durable commit"), bound_text, bound_p50))
        appended, append_text = spread([r.get("append_fsync_per_s") for r in ok])
        if appended is not None:
            _, append_p50 = spread([r.get("append_fsync_p50_us") for r in ok])
            w("| for comparison: append 128 B + fsync | %s | %s | – | – |" % (append_text, append_p50))
        medians = {}
        for key, label in durable_paths:
            _, rate = spread([r.get(key + "_adds_per_s") for r in ok])
            _, p50 = spread([r.get(key + "_p50_us") for r in ok])
            ratio_median, ratio_text = spread([r.get(key + "_ratio") for r in ok])
            medians[key] = ratio_median
            if ratio_median is None:
                w("| %s | %s | %s | – | ≥ 0.8× |" % (label, rate, p50))
                continue
            w("| %s | %s | %s | %s× | ≥ 0.8× %s |" % (label, rate, p50, ratio_text,
                                                    "met" if ratio_median >= 0.8 else "**missed**"))
        w("")
        w("Median (min–max) over %d round%s. " % (len(ok), "" if len(ok) == 1 else "s") + measured_note(ok) + "\n")
        failed = [r for r in durable if r.get("failed")]
        if failed:
            w("- Could not finish %d of %d rounds (%s).\n" % (len(failed), len(durable),
                                                             "; ".join(sorted({r["failed"] for r in failed}))))
        summary["durable-" + store] = medians
    if not any_durable:
        w("Not run.\n")

    # Measured by `cargo bench --bench cluster`, not by this suite (real daemons on a
    # shared store have no peer to compare with): the hand-written section is kept.
    cluster = os.path.join(HERE, "cluster.md")
    if os.path.exists(cluster):
        w(open(cluster).read().rstrip() + "\n")

    w("## Configurations\n")
    w("- **kairos**: the library (`kairos::scheduler::Scheduler`), a 16-thread `ThreadPoolExecutor`, the "
      "memory store unless said otherwise; recurring jobs with `coalesce = false`, no misfire limit and a "
      "high `max_instances`, so no run is dropped by policy. Its defaults otherwise, including the 250 ms "
      "fire-ahead window (`DEFAULT_FIRE_AHEAD`): due jobs are handed to the executor up to 250 ms early and "
      "start at their time, runs due at one instant behind one timer; a pause, reschedule or removal within "
      "the window takes the run back. Benches: `benches/{burst,pending,recurring}.rs`.")
    w("- **APScheduler 3.11**: `BackgroundScheduler`, `ThreadPoolExecutor(64)`, `misfire_grace_time=None`, "
      "`coalesce=False`, `max_instances=1000`; `MemoryJobStore` or `SQLAlchemyJobStore` (psycopg2 for "
      "PostgreSQL). The scheduler is started paused while jobs are added and resumed after, so every add "
      "reaches the store (before `start()` APScheduler only queues adds in a list) and no add wakes the "
      "scheduler thread. Script: `benches/compare/apscheduler_peer.py`.")
    w("- **tokio-cron-scheduler 0.15**: its default in-memory store, jobs added "
      "before `start()` so its 500 ms ticker does not rescan a growing list while adding, and for the firing "
      "workloads `JobScheduler::new_with_channel_size(jobs)`: with the default of 200, a tick that activates "
      "more jobs than that overflows its broadcast channels and drops activations (28%% of a 10,000-job "
      "burst in our quick run); one-off jobs "
      "with `Job::new_one_shot_at_instant`, recurring with `Job::new_repeated`. It has no setting for its "
      "tick. Program: `benches/compare/tcs` (its own Cargo project and target dir).")
    w("- Every system runs in its own process, one at a time, in alternation; memory per pending job is the "
      "growth of the process's resident set (`VmRSS` in /proc) while adding divided by the jobs added. "
      "CPU is the process's user + system time over the window, all threads, read the same way by every "
      "system in its own process: `getrusage(RUSAGE_SELF)`, in microseconds (kairos's benches and the "
      "tokio-cron-scheduler peer through `libc`, APScheduler's peer through Python's `resource`). Pages "
      "before 2026-12-06 read kairos's and tokio-cron-scheduler's from /proc in 10 ms clock ticks and "
      "APScheduler's with getrusage, which could not compare near zero.")
    w("")

    closing = os.path.join(HERE, "closing.md")
    if os.path.exists(closing) and args.mode == "full":
        w(open(closing).read().rstrip() + "\n")

    page.insert(summary_at, summary_section(summary))
    with open(args.out, "w") as out:
        out.write("\n".join(page).rstrip() + "\n")


def summary_section(summary):
    def best_peer(medians, path, better):
        if not medians:
            return None, None, None
        ours = medians.get((KAIROS, path))
        peers = [(medians.get((p, path)), p) for p in (APS, TCS) if medians.get((p, path)) is not None]
        if path == "lateness_ms.abs_p99":
            peers = [(v, p) for v, p in peers]
        if not peers or ours is None:
            return ours, None, None
        value, peer = (min if better == "lower" else max)(peers)
        return ours, value, peer

    rows = []

    def row(label, key, path, better, target, check):
        ours, value, peer = best_peer(summary.get(key), path, better)
        if ours is None or value is None:
            return
        ratio_value = ours / value if value else float("inf") if ours else 0.0
        met = check(ratio_value, ours)
        rows.append("| %s | %s | %s (%s) | %s | %s | %s |" % (
            label, fmt(ours), fmt(value), NAMES[peer], ("%.3g×" % ratio_value) if value else "–", target,
            "met" if met else "**missed**"))

    def absolute(label, key, path, target, check):
        # A target on kairos's own figure (no peer has one to compare).
        ours = (summary.get(key) or {}).get((KAIROS, path))
        if ours is not None:
            rows.append("| %s | %s | – | – | %s | %s |" % (
                label, fmt(ours), target, "met" if check(ours) else "**missed**"))

    row("\\|lateness\\| p99, burst 100k/10s (ms)", "burst-100000", "lateness_ms.abs_p99", "lower", "≤ 0.1×", lambda r, o: r <= 0.1)
    row("\\|lateness\\| p99, burst 10k/5s (ms)", "burst-10000", "lateness_ms.abs_p99", "lower", "≤ 0.5×", lambda r, o: r <= 0.5)
    row("\\|lateness\\| p99, recurring 10k/s (ms)", "recurring", "lateness_ms.abs_p99", "lower", "≤ 0.1×", lambda r, o: r <= 0.1)
    absolute("\\|lateness\\| p99, recurring 10k/s, absolute (ms)", "recurring", "lateness_ms.abs_p99", "≤ 5 ms", lambda o: o <= 5)
    row("CPU, recurring 10k/s (% of a core)", "recurring", "cpu_percent", "lower", "≤ 0.5×", lambda r, o: r <= 0.5)
    row("\\|lateness\\| p99, recurring on SQLite (ms)", "recurring-sqlite", "lateness_ms.abs_p99", "lower", "≤ 0.1×", lambda r, o: r <= 0.1)
    row("\\|lateness\\| p99, recurring on PostgreSQL (ms)", "recurring-postgresql", "lateness_ms.abs_p99", "lower", "≤ 0.1×", lambda r, o: r <= 0.1)
    row("\\|lateness\\| p99, burst on SQLite (ms)", "burst-sqlite", "lateness_ms.abs_p99", "lower", "≤ 0.1×", lambda r, o: r <= 0.1)
    row("\\|lateness\\| p99, burst on PostgreSQL (ms)", "burst-postgresql", "lateness_ms.abs_p99", "lower", "≤ 0.1×", lambda r, o: r <= 0.1)
    # One-at-a-time adds to SQLite and PostgreSQL are judged against the machine's bound
    # for a durable commit (the durable rows below), not against a peer's rate.
    for key, name in (("burst-100000", "burst 100k"), ("burst-10000", "burst 10k"), ("pending", "order-cancel")):
        row("add rate, %s (jobs/s)" % name, key, "add_per_s", "higher", "≥ 10×", lambda r, o: r >= 10)
    for key, name in (("http-sqlite", "SQLite"), ("http-postgresql", "PostgreSQL")):
        row("HTTP add rate, %s (jobs/s)" % name, key, "adds_per_s", "higher", "≥ 15×", lambda r, o: r >= 15)
    for key, name in (("durable-sqlite", "SQLite"), ("durable-postgresql", "PostgreSQL")):
        durable = summary.get(key) or {}
        for path, label in (("store", "JobStore::add_job"), ("http", "HTTP, one client")):
            value = durable.get(path)
            if value is not None:
                rows.append("| one-at-a-time durable adds, %s, %s (× bound) | %s× | – (bound: one durable "
                            "commit per add) | – | ≥ 0.8× bound | %s |" % (
                                name, label, fmt(value), "met" if value >= 0.8 else "**missed**"))
    row("memory per pending job, order-cancel (bytes)", "pending", "bytes_per_pending_job", "lower", "≤ 0.2×, ≤ 100 bytes", lambda r, o: r <= 0.2 and o <= 100)
    absolute("restart with the pending jobs on SQLite (ms)", "restart", "restart_ms", "≤ 10 ms", lambda o: o <= 10)
    rows_idle = summary.get("pending")
    if rows_idle:
        ours = rows_idle.get((KAIROS, "idle_cpu_percent"))
        if ours is not None:
            peers = ", ".join("%s %s%%" % (NAMES[p], fmt(rows_idle.get((p, "idle_cpu_percent"))))
                              for p in (APS, TCS) if rows_idle.get((p, "idle_cpu_percent")) is not None)
            rows.append("| idle CPU holding the order-cancel jobs (%% of a core) | %s | %s | – | ~0 | %s |" % (
                fmt(ours), peers, "met" if ours < 0.1 else "**missed**"))
    text = "## Summary against the targets\n\n"
    text += "Targets are kairos / best peer, but for one-at-a-time durable adds: kairos / the machine's bound "
    text += "for them, measured in the same run. Lateness uses |lateness| p99 so that a peer starting jobs early "
    text += "is not counted as on time.\n\n"
    text += "| figure | kairos | best peer | kairos / best peer | target | |\n| --- | --- | --- | --- | --- | --- |\n"
    text += "\n".join(rows) + "\n"
    return text


if __name__ == "__main__":
    sys.exit(main())
