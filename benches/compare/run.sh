#!/usr/bin/env bash
# The benchmark suite: kairos next to APScheduler 3.11 and tokio-cron-scheduler 0.15,
# each workload run on every system in alternation (kairos, APScheduler,
# tokio-cron-scheduler, repeat), on this machine, then BENCHMARKS.md.
#
#   ./benches/compare/run.sh [--quick] [--out FILE] [--only a,b,...] [--rounds N]
#
# --quick    smoke sizes, one round (a few minutes); default: the full sizes, 5 rounds
#            of every workload (about an hour on two cores).
# --out      where the results page goes (default: BENCHMARKS.md at the repo root).
# --only     workloads to run: burst, burst100k, pending, restart, recurring, stores,
#            cron, http, durable (default: all).
# --rounds   override the number of rounds of every workload.
#
# Sets up what it needs, from PyPI and crates.io only: benches/compare/.venv
# (apscheduler 3.11, sqlalchemy, psycopg2-binary) and the tokio-cron-scheduler peer in
# benches/compare/tcs, built in its own target dir (benches/compare/tcs/target). The
# kairos benches build in $CARGO_TARGET_DIR (default target/). PostgreSQL workloads use
# $KAIROS_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test) and are
# skipped, and said so, when it does not answer.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)

quick=0 out="$repo/BENCHMARKS.md" only="" rounds_override=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; shift ;;
    --out) out=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --rounds) rounds_override=$2; shift 2 ;;
    *) echo "usage: $0 [--quick] [--out FILE] [--only a,b,...] [--rounds N]" >&2; exit 2 ;;
  esac
done

say() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
wanted() { [ -z "$only" ] || [[ ",$only," == *",$1,"* ]]; }

# Sizes. Full: what BENCHMARKS.md reports; quick: a smoke run of the same code paths.
# Full runs take 5 rounds of every workload per system: the page reports medians with
# their ranges, and on a shared machine 2 or 3 rounds leave the median at the mercy of
# one noisy round. That makes the full run about an hour on two cores (it was half an
# hour at 2-3 rounds); the order-cancel idle watch is 30 s (was 60 s), which CPU time
# read with getrusage's microseconds resolves well (see benches/README.md).
if [ "$quick" = 1 ]; then
  mode=quick
  burst_small=(10000 5 5) burst_large=()
  pending=(100000 30 10) pending_budget=120 restart_jobs=100000
  recurring=(10000 1 10 5)
  store_burst=(1000 2 10) store_recurring=(500 1 10 8)
  http_seconds=2 durable_seconds=1
  r_burst=1 r_burst_large=0 r_pending=1 r_restart=1 r_recurring=1 r_stores=1 cron_repeats=3 r_http=1
  r_durable=1
else
  mode=full
  burst_small=(10000 5 5) burst_large=(100000 10 15)
  pending=(1000000 30 30) pending_budget=300 restart_jobs=1000000
  recurring=(10000 1 60 5)
  store_burst=(2000 2 15) store_recurring=(1000 1 20 10)
  http_seconds=10 durable_seconds=3
  r_burst=5 r_burst_large=5 r_pending=5 r_restart=5 r_recurring=5 r_stores=5 cron_repeats=7 r_http=5
  r_durable=5
fi
if [ -n "$rounds_override" ]; then
  r_burst=$rounds_override r_pending=$rounds_override r_restart=$rounds_override
  r_recurring=$rounds_override r_stores=$rounds_override r_http=$rounds_override
  r_durable=$rounds_override
  [ "$quick" = 1 ] || r_burst_large=$rounds_override
fi

venv=benches/compare/.venv
python=$venv/bin/python
tcs_dir=benches/compare/tcs
tcs=$tcs_dir/target/release/kairos-compare-tcs
pg_url=${KAIROS_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The commit every result line names, taken before this script touches its own outputs
# (it empties the results file below): only changes to anything else are "+changes".
stamp_commit=$(git rev-parse --short HEAD)
[ -z "$(git status --porcelain --untracked-files=no -- . ':!BENCHMARKS.md' ':!benches/compare/results-*.jsonl')" ] \
  || stamp_commit="$stamp_commit+changes"

# The raw JSON lines of every run, kept next to the scripts (results-full.jsonl is
# committed with BENCHMARKS.md; report.py can rebuild the page from it).
results=benches/compare/results-$mode.jsonl
if [ -n "$only" ] && [ -f "$results" ]; then
  # A partial run replaces only its own workloads' lines and keeps the others.
  "$python" - "$results" "$only" "${burst_small[0]}" <<'PY'
import json, sys
path, only, small = sys.argv[1], set(sys.argv[2].split(",")), int(sys.argv[3])
def category(run):
    workload, store = run.get("workload"), run.get("store")
    if store in ("sqlite", "postgresql") and workload in ("burst", "recurring"):
        return "stores"
    if workload == "burst":
        return "burst" if run.get("jobs") == small else "burst100k"
    if workload == "criterion":
        return "cron"
    return workload
kept = [line for line in open(path) if line.strip() and category(json.loads(line)) not in only]
open(path, "w").writelines(kept)
PY
else
  : > "$results"
fi
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
# Every result line says when, where and on which commit it was measured, so a page
# built from lines of several runs (`--only`) can say which is which.
stamp_cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
export stamp_cpu stamp_commit

# --- setup ---------------------------------------------------------------------------
venv_works() { "$python" -c 'import apscheduler, sqlalchemy, psycopg2' >/dev/null 2>&1; }
if ! venv_works; then
  say "setting up $venv (apscheduler 3.11, sqlalchemy, psycopg2-binary from PyPI)"
  # A venv that does not import (half installed, made by a Python since removed) is
  # made again rather than installed into.
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    'apscheduler==3.11.*' 'sqlalchemy>=2,<3' 'psycopg2-binary>=2.9,<3'
  venv_works || { say "the venv in $venv does not import apscheduler, sqlalchemy and psycopg2"; exit 1; }
fi
say "building the tokio-cron-scheduler peer ($tcs_dir, own target dir)"
(cd "$tcs_dir" && CARGO_TARGET_DIR="$repo/$tcs_dir/target" cargo build --release --locked --quiet)
say "building the kairos benches"
cargo bench --no-run --message-format=json-render-diagnostics \
  --bench burst --bench pending --bench recurring --bench next_fire_time --bench http_adds \
  --bench durable_adds \
  >"$work/build.json"
# The bench executables, run directly so that `timeout` can bound them.
bench_exe() {
  "$python" -c '
import json, sys
for line in open(sys.argv[1]):
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message["target"]["name"] == sys.argv[2] \
            and message.get("executable"):
        print(message["executable"])
        break
else:
    sys.exit("no executable for " + sys.argv[2])' "$work/build.json" "$1"
}
burst_exe=$(bench_exe burst) pending_exe=$(bench_exe pending) recurring_exe=$(bench_exe recurring)
http_exe=$(bench_exe http_adds) durable_exe=$(bench_exe durable_adds)
pg_ok=0
if command -v pg_isready >/dev/null 2>&1 \
  && "$python" -c 'import sys, psycopg2; psycopg2.connect(sys.argv[1]).close()' "$pg_url" >/dev/null 2>&1; then
  pg_ok=1
else
  say "PostgreSQL at $(printf %s "$pg_url" | sed 's|//[^@]*@|//***@|') does not answer: its workloads are skipped"
fi
# The SQL stores the store workloads run on, and the name each result line gives one.
sql_stores=(sqlite)
[ "$pg_ok" = 1 ] && sql_stores+=("$pg_url")
store_name() { if [ "$1" = sqlite ]; then echo sqlite; else echo postgresql; fi; }

# --- running -------------------------------------------------------------------------
# One run: appends its JSON line (plus round and wall time) to the results, or a
# failure line naming the system and workload when it could not finish.
run() { # system workload store round timeout command...
  local system=$1 workload=$2 store=$3 round=$4 limit=$5; shift 5
  local log=$work/run.log started line status=0
  say "  $workload/$store round $round: $system"
  started=$(date +%s%N)
  line=$(timeout "$limit" "$@" 2>"$log" | tail -n 1) || status=$?
  if [ "$status" = 0 ] && [ -n "$line" ]; then
    printf '%s\n' "$line" | "$python" -c '
import json, os, sys, time
run = json.loads(sys.stdin.read())
run.update(round=int(sys.argv[1]), wall_s=float(sys.argv[2]))
run["measured"] = dict(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                       cpu=os.environ["stamp_cpu"], commit=os.environ["stamp_commit"],
                       load=open("/proc/loadavg").read().split()[0])
print(json.dumps(run))' "$round" "$(( ($(date +%s%N) - started) / 1000000 ))e-3" >> "$results"
  else
    local why="exit $status"
    [ "$status" = 124 ] && why="did not finish within ${limit}s"
    say "    $system could not finish: $why; $(tail -n 2 "$log" | tr '\n' ' ')"
    "$python" -c 'import json, sys; print(json.dumps(dict(system=sys.argv[1], workload=sys.argv[2], store=sys.argv[3], round=int(sys.argv[4]), failed=sys.argv[5])))' \
      "$system" "$workload" "$store" "$round" "$why" >> "$results"
  fi
}
aps=("$python" benches/compare/apscheduler_peer.py)

burst_rounds() { # rounds jobs window lead
  local r
  for r in $(seq "$1"); do
    run kairos burst memory "$r" 300 "$burst_exe" "$2" "$3" --lead="$4"
    run apscheduler-3.11 burst memory "$r" 300 "${aps[@]}" burst "$2" "$3" "$4" memory
    run tokio-cron-scheduler-0.15 burst memory "$r" 300 "$tcs" burst "$2" "$3" "$4"
  done
}

if wanted burst; then
  say "burst: ${burst_small[0]} one-off jobs over ${burst_small[1]} s, $r_burst round(s)"
  burst_rounds "$r_burst" "${burst_small[@]}"
fi
if wanted burst100k && [ "${#burst_large[@]}" -gt 0 ] && [ "$r_burst_large" -gt 0 ]; then
  say "burst: ${burst_large[0]} one-off jobs over ${burst_large[1]} s, $r_burst_large round(s)"
  burst_rounds "$r_burst_large" "${burst_large[@]}"
fi

if wanted pending; then
  say "order-cancel: ${pending[0]} pending one-off jobs over ${pending[1]} days, idle ${pending[2]} s, $r_pending round(s)"
  limit=$((pending_budget + ${pending[2]} + 300))
  for r in $(seq "$r_pending"); do
    run kairos pending memory "$r" "$limit" "$pending_exe" "${pending[@]}" --budget="$pending_budget"
    run apscheduler-3.11 pending memory "$r" "$limit" "${aps[@]}" pending "${pending[@]}" "$pending_budget"
    run tokio-cron-scheduler-0.15 pending memory "$r" "$limit" "$tcs" pending "${pending[@]}" "$pending_budget"
  done
fi

if wanted restart; then
  say "restart: $restart_jobs pending jobs in SQLite (filled once per system), $r_restart round(s)"
  for r in $(seq "$r_restart"); do
    run kairos restart sqlite "$r" 1200 "$pending_exe" restart "$work/kairos-restart.db" "$restart_jobs"
    run apscheduler-3.11 restart sqlite "$r" 1200 "${aps[@]}" restart "$work/aps-restart.db" "$restart_jobs"
  done
  rm -f "$work"/*.db*
fi

if wanted recurring; then
  say "recurring: ${recurring[0]} interval jobs every ${recurring[1]} s for ${recurring[2]} s, $r_recurring round(s)"
  limit=$((${recurring[2]} + 300))
  for r in $(seq "$r_recurring"); do
    run kairos recurring memory "$r" "$limit" "$recurring_exe" "${recurring[@]:0:3}" --lead="${recurring[3]}"
    run apscheduler-3.11 recurring memory "$r" "$limit" "${aps[@]}" recurring "${recurring[@]}" memory
    run tokio-cron-scheduler-0.15 recurring memory "$r" "$limit" "$tcs" recurring "${recurring[@]}"
  done
fi

if wanted stores; then
  for store in "${sql_stores[@]}"; do
    name=$(store_name "$store")
    say "$name: burst of ${store_burst[0]} jobs over ${store_burst[1]} s and ${store_recurring[0]} jobs every ${store_recurring[1]} s for ${store_recurring[2]} s, $r_stores round(s)"
    for r in $(seq "$r_stores"); do
      run kairos burst "$name" "$r" 600 "$burst_exe" "${store_burst[0]}" "${store_burst[1]}" --lead="${store_burst[2]}" --store="$store"
      run apscheduler-3.11 burst "$name" "$r" 600 "${aps[@]}" burst "${store_burst[@]}" "$store"
    done
    for r in $(seq "$r_stores"); do
      run kairos recurring "$name" "$r" 600 "$recurring_exe" "${store_recurring[@]:0:3}" --lead="${store_recurring[3]}" --store="$store"
      run apscheduler-3.11 recurring "$name" "$r" 600 "${aps[@]}" recurring "${store_recurring[@]}" "$store"
    done
  done
fi

if wanted cron; then
  say "cron next fire time: criterion (kairos, cron, croner) and APScheduler's CronTrigger"
  criterion_args=()
  [ "$quick" = 1 ] && criterion_args=(--warm-up-time 0.2 --measurement-time 0.5 --sample-size 10)
  cargo bench --quiet --bench next_fire_time -- "${criterion_args[@]}" >"$work/criterion.log" 2>&1 \
    || { say "criterion failed:"; tail -n 20 "$work/criterion.log" >&2; }
  # Criterion's medians go into the results too, so a later partial run keeps them.
  "$python" benches/compare/report.py --criterion-line "${CARGO_TARGET_DIR:-target}/criterion" >> "$results"
  run apscheduler-3.11 cron - 1 600 "${aps[@]}" cron "$cron_repeats"
fi

# The HTTP add rate: 32 clients POST one-off jobs for a while. kairos is the real
# daemon (http_adds starts it); APScheduler has no HTTP API, so its peer is the server
# an order service would write (apscheduler_http_peer.py), driven by the same clients.
aps_http() { # store-name round store
  local port=$((20000 + RANDOM % 20000)) pid
  "$python" benches/compare/apscheduler_http_peer.py "$3" "$port" >"$work/peer.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do grep -q '^listening' "$work/peer.log" && break; sleep 0.1; done
  run apscheduler-3.11 http "$1" "$2" 300 "$http_exe" --seconds "$http_seconds" \
    --external "http://127.0.0.1:$port/api/v1" --system apscheduler-3.11 --store "$1"
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
if wanted http; then
  for store in "${sql_stores[@]}"; do
    name=$(store_name "$store")
    say "http: 32 clients adding one-off jobs through POST /jobs for $http_seconds s on $name, $r_http round(s)"
    for r in $(seq "$r_http"); do
      run kairos http "$name" "$r" 300 "$http_exe" --seconds "$http_seconds" --store "$name" "$store"
      aps_http "$name" "$r" "$store"
    done
  done
fi

# One-at-a-time durable adds next to the machine's bound for them (one durable commit
# per add), both measured by durable_adds in the same run: a write+fsync loop beside the
# SQLite files, single-row INSERT+COMMIT on PostgreSQL. kairos only: the bound is the
# figure it is judged by, not a peer.
if wanted durable; then
  for store in "${sql_stores[@]}"; do
    name=$(store_name "$store")
    say "durable: one add at a time on $name next to its bound, ${durable_seconds} s per phase, $r_durable round(s)"
    for r in $(seq "$r_durable"); do
      run kairos durable "$name" "$r" 300 "$durable_exe" --seconds "$durable_seconds" "$store"
    done
  done
fi

# --- the page ------------------------------------------------------------------------
say "writing $out"
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
"$python" benches/compare/report.py \
  --results "$results" --mode "$mode" --out "$out" \
  --criterion "${CARGO_TARGET_DIR:-target}/criterion" --postgres "$pg_ok" \
  --pg-url "$pg_url" --pending-budget "$pending_budget" --load-start "$load_start" \
  --load-end "$load_end"
say "done: $out"
