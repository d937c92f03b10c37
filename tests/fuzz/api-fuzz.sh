#!/usr/bin/env bash
# Schema-driven fuzzing of the HTTP API: schemathesis reads the daemon's own
# GET /api/v1/openapi.json and throws generated requests, valid and invalid, at every
# operation of a real `kairos run` (SQLite store, a token). It fails on any 5xx, on a
# response that does not match the document, and on a panic in the daemon's log.
#
# Usage: tests/fuzz/api-fuzz.sh [MAX_EXAMPLES]      (default 100 per operation)
# Environment: KAIROS_FUZZ_CHECKS (default not_a_server_error,response_schema_conformance,
# status_code_conformance,content_type_conformance), KAIROS_FUZZ_SEED, KAIROS_BIN (a
# built kairos binary; otherwise `cargo build` makes one), CARGO_TARGET_DIR.
#
# The Python venv lives in tests/fuzz/.venv (gitignored) and is made on first use with
# KAIROS_FUZZ_PYTHON (default: the first of python3.13, python3.12, python3 found).
# Python 3.11 works but can crash in schemathesis's coverage phase ("AST constructor
# recursion depth mismatch", a CPython 3.11 bug hit by hypothesis), so newer is better.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv="$here/.venv"
examples="${1:-100}"
checks="${KAIROS_FUZZ_CHECKS:-not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance}"
token="fuzz-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

# A venv that does not run (made on another machine, a Python since removed) is made
# again: the folder existing is not enough.
if ! "$venv/bin/schemathesis" --version >/dev/null 2>&1; then
    rm -rf "$venv"
    python="${KAIROS_FUZZ_PYTHON:-}"
    if [ -z "$python" ]; then
        for candidate in python3.13 python3.12 python3; do
            if "$candidate" --version >/dev/null 2>&1; then
                python=$candidate
                break
            fi
        done
    fi
    [ -n "$python" ] || { echo "api-fuzz: no python3 found (set KAIROS_FUZZ_PYTHON)" >&2; exit 1; }
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet 'schemathesis>=4,<5'
    "$venv/bin/schemathesis" --version >/dev/null \
        || { echo "api-fuzz: the venv in $venv does not run schemathesis" >&2; exit 1; }
fi

if [ -n "${KAIROS_BIN:-}" ]; then
    kairos="$KAIROS_BIN"
else
    (cd "$root" && cargo build --quiet --bin kairos)
    kairos="${CARGO_TARGET_DIR:-$root/target}/debug/kairos"
fi

work=$(mktemp -d)
daemon_pid=""
keeper_pid=""
cleanup() {
    if [ -n "$keeper_pid" ]; then
        kill "$keeper_pid" 2>/dev/null || true
        wait "$keeper_pid" 2>/dev/null || true
    fi
    if [ -n "$daemon_pid" ]; then
        kill "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# Only `orders.cancel` may be scheduled, and it is left unconfigured: generated jobs
# that run (POST /jobs/{id}/run) fail harmlessly instead of running programs (`command`)
# or calling random URLs (`http`). The rate limit is out of the way: schemathesis sends
# one token's requests as fast as the daemon answers them.
cat >"$work/config.toml" <<EOF
[jobstores.default]
url = "sqlite://$work/kairos.db"

[api]
listen = "127.0.0.1:0"
token = "$token"
allowed_tasks = ["orders.cancel"]
rate_limit = 100000

[log]
level = "warn,kairos::daemon=info"
EOF

"$kairos" run -c "$work/config.toml" >"$work/daemon.log" 2>&1 &
daemon_pid=$!
url=""
for _ in $(seq 1 300); do
    url=$(sed -n 's/.*API listening on \(http:[^ ]*\).*/\1/p' "$work/daemon.log" | head -n 1)
    [ -n "$url" ] && break
    kill -0 "$daemon_pid" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$url" ]; then
    echo "api-fuzz: the daemon did not start:" >&2
    cat "$work/daemon.log" >&2
    exit 1
fi
echo "api-fuzz: fuzzing $url with up to $examples examples per operation ($checks)"

# Without a job to act on, every /jobs/{id}/... request would be a 404. A job is added
# up front and its id is given to schemathesis for every {id}: the routes then pause,
# run, backfill (so it recurs: a one-off job has nothing to backfill), change and
# delete it. Deleted, it is added again within half a second, so the operations tested
# after DELETE act on a job too instead of all answering 404; the API's own 404s are
# covered by the requests that race the re-adding.
add_fuzz_job() {
    curl --silent --show-error --output /dev/null --write-out '%{http_code}' \
        --header "Authorization: Bearer $token" --header "content-type: application/json" \
        --data '{"id": "fuzz-job", "task": "orders.cancel", "args": {"order_id": 1}, "trigger": {"type": "cron", "month": 1, "day": 1, "hour": 0}}' \
        "$url/jobs"
}
added=$(add_fuzz_job)
if [ "$added" != 201 ]; then
    echo "api-fuzz: adding the job answered $added, not 201" >&2
    exit 1
fi
(
    while kill -0 "$daemon_pid" 2>/dev/null; do
        add_fuzz_job >/dev/null 2>&1 || true
        sleep 0.5
    done
) &
keeper_pid=$!
# If-Match, like the id, can only name what the daemon holds: a made-up ETag is 412
# whatever the body (the stale-ETag answer has tests of its own, in tests/api.rs), so
# the changes are sent with `*`, which any existing job matches, and are all tried.
cat >"$work/schemathesis.toml" <<EOF
[parameters]
"path.id" = "fuzz-job"
"header.If-Match" = "*"
EOF

status=0
# GET /events is a never-ending stream: every request to it would only time out.
# hooks.py gives each generated Idempotency-Key a suffix of its own (see there).
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" SCHEMATHESIS_HOOKS=hooks \
"$venv/bin/schemathesis" --config-file "$work/schemathesis.toml" run "$url/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks "$checks" \
    --max-examples "$examples" \
    --exclude-path /events \
    --request-timeout 10 \
    --workers 2 \
    --no-color \
    --report junit --report-dir "$work/report" \
    ${KAIROS_FUZZ_SEED:+--seed "$KAIROS_FUZZ_SEED"} || status=$?

if grep -q "panicked" "$work/daemon.log"; then
    echo "api-fuzz: the daemon panicked:" >&2
    grep -B2 -A10 "panicked" "$work/daemon.log" >&2
    status=1
fi
if ! kill -0 "$daemon_pid" 2>/dev/null; then
    echo "api-fuzz: the daemon died:" >&2
    tail -n 50 "$work/daemon.log" >&2
    status=1
fi
exit "$status"
