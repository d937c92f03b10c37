#!/usr/bin/env bash
# The burst workload on kairos and APScheduler 3.11, alternating, on this machine.
#
#   ./benches/compare/burst.sh [--quick] [--rounds N]
#
# --quick: 10,000 jobs over 5 s (a smoke run); default: 100,000 jobs over 10 s.
# Sets up benches/compare/.venv with apscheduler 3.11 on first use. Prints each run's
# JSON line and a table of medians with the ratio kairos / APScheduler.
set -euo pipefail
cd "$(dirname "$0")/../.."

jobs=100000 seconds=10 rounds=3
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) jobs=10000 seconds=5; shift ;;
    --rounds) rounds=$2; shift 2 ;;
    *) echo "usage: $0 [--quick] [--rounds N]" >&2; exit 2 ;;
  esac
done

venv=benches/compare/.venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'apscheduler==3.11.*'
fi

cargo bench --bench burst --no-run >/dev/null 2>&1
results=$(mktemp)
for round in $(seq "$rounds"); do
  cargo bench --bench burst -- "$jobs" "$seconds" 2>/dev/null | tail -n 1 | tee -a "$results"
  "$venv/bin/python" benches/compare/apscheduler_burst.py "$jobs" "$seconds" | tee -a "$results"
done

python3 - "$results" <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
by_system = {}
for run in runs:
    by_system.setdefault(run["system"], []).append(run)
def median(system, pick):
    return statistics.median(pick(run) for run in by_system[system])
metrics = [
    ("add rate (jobs/s)", lambda r: r["add_per_s"], "higher"),
    ("lateness p50 (ms)", lambda r: r["lateness_ms"]["p50"], "lower"),
    ("lateness p99 (ms)", lambda r: r["lateness_ms"]["p99"], "lower"),
    ("lateness max (ms)", lambda r: r["lateness_ms"]["max"], "lower"),
    ("jobs lost", lambda r: r["lost"], "lower"),
    ("bytes per pending job", lambda r: r["bytes_per_pending_job"], "lower"),
    ("peak RSS (MiB)", lambda r: r["peak_rss_mib"], "lower"),
]
systems = sorted(by_system)
print(f"\n{runs[0]['jobs']} one-off jobs over {runs[0]['window_s']} s, median of {len(by_system[systems[0]])} rounds")
print(f"| metric | {' | '.join(systems)} | kairos / apscheduler |")
print("| --- | " + " | ".join("---" for _ in systems) + " | --- |")
for name, pick, better in metrics:
    values = {system: median(system, pick) for system in systems}
    peer = values.get("apscheduler-3.11")
    ours = values.get("kairos")
    ratio = f"{ours / peer:.3g}x" if peer else "-"
    print(f"| {name} | " + " | ".join(f"{values[s]:.4g}" for s in systems) + f" | {ratio} ({better} is better) |")
PY
rm -f "$results"
