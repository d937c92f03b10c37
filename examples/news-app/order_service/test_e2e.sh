#!/usr/bin/env bash
# End-to-end test of the Python order service: a venv made from PyPI (pinned
# requirements.txt), a real kairos daemon (target/debug/kairos) with `orders.cancel`
# pointed at MariaDB 127.0.0.1:3306 db `test` (root, no password), and two instances of
# the service (30 minute and 2 second payment windows). test_e2e.py holds the checks.
#
# With KAIROS_REQUIRE_SERVICES=1 (as .ci/run sets it) a missing python3/venv or MariaDB
# fails; otherwise it prints SKIP. A PyPI that pip cannot reach always fails.
# Tables are `kairos_pyex_<pid>_orders` and `..._order_requests`, dropped at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
venv="$here/.venv"

say() { printf '[order-service e2e] %s\n' "$*"; }
fail() { say "FAIL: $*" >&2; exit 1; }
missing() { # what is missing: a failure when services are required, else a SKIP
  if [ "${KAIROS_REQUIRE_SERVICES:-0}" = 1 ]; then fail "$* (KAIROS_REQUIRE_SERVICES=1)"; fi
  say "SKIP: $*"; exit 0
}

command -v python3 >/dev/null 2>&1 || missing "python3 is not installed"
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 \
  || missing "python3 cannot make a venv (install python3-venv)"
mysql_host=${MYSQL_HOST:-127.0.0.1} mysql_port=${MYSQL_PORT:-3306}
python3 -c "import socket,sys; socket.create_connection(('$mysql_host', $mysql_port), 3)" \
  >/dev/null 2>&1 || missing "MariaDB is not reachable at $mysql_host:$mysql_port"

kairos="${KAIROS_BIN:-${CARGO_TARGET_DIR:-$repo/target}/debug/kairos}"
if [ ! -x "$kairos" ]; then
  say "building kairos (cargo build --bin kairos)"
  (cd "$repo" && cargo build --quiet --bin kairos)
fi

# The venv is kept between runs while requirements.txt is unchanged and it imports.
venv_works() {
  "$venv/bin/python" -c 'import flask, requests, pymysql' >/dev/null 2>&1 \
    && "$venv/bin/python" -m pip check >/dev/null 2>&1 \
    && cmp -s "$here/requirements.txt" "$venv/requirements.txt"
}
if ! venv_works; then
  say "making the venv from PyPI ($venv)"
  rm -rf "$venv"
  python3 -m venv "$venv" || fail "python3 -m venv failed"
  if ! timeout 300 "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      --timeout 30 --retries 2 -r "$here/requirements.txt"; then
    rm -rf "$venv"
    fail "pip could not install requirements.txt from PyPI (no network, or a proxy/index \
setting is needed: PIP_INDEX_URL, HTTPS_PROXY)"
  fi
  cp "$here/requirements.txt" "$venv/requirements.txt"
  venv_works || fail "the new venv does not import flask, requests and pymysql"
fi
py="$venv/bin/python"
say "venv ok: $("$py" -c 'import flask, requests, pymysql, importlib.metadata as m; print(*(f"{n} {m.version(n)}" for n in ("Flask", "requests", "PyMySQL")), sep=", ")')"

work=$(mktemp -d "${TMPDIR:-/tmp}/kairos-pyex.XXXXXX")
export TABLE_PREFIX="kairos_pyex_$$_"
export MYSQL_HOST=$mysql_host MYSQL_PORT=$mysql_port
export MYSQL_USER=${MYSQL_USER:-root} MYSQL_DATABASE=${MYSQL_DATABASE:-test}
export KAIROS_TOKEN="pyex-$("$py" -c 'import secrets; print(secrets.token_hex(16))')"
pids=()
daemon_pid=
passed=0

cleanup() {
  local code=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [ -n "$daemon_pid" ]; then
    kill -TERM "$daemon_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$daemon_pid" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  "$py" "$here/test_e2e.py" --drop-tables || say "could not drop the ${TABLE_PREFIX}* tables"
  if [ "$passed" != 1 ]; then
    for log in "$work"/*.log; do
      [ -f "$log" ] || continue
      say "--- $(basename "$log") (last 40 lines)"; tail -n 40 "$log" >&2
    done
  fi
  rm -rf "$work"
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$work/jobs" "$work/state"
cat > "$work/config.toml" <<TOML
[scheduler]
shutdown_timeout = "5s"

[jobstores.default]
url = "sqlite://state/kairos.db"

[api]
listen = "127.0.0.1:0"
ui = false
allowed_tasks = ["orders.cancel"]

# The order service's token: it may add and remove orders.cancel jobs and nothing else.
[api.tokens.orders]
token = "\${KAIROS_TOKEN}"
access = "write"
tasks = ["orders.cancel"]

[tasks.orders]
database_url = "mysql://$MYSQL_USER@$MYSQL_HOST:$MYSQL_PORT/$MYSQL_DATABASE"
table = "${TABLE_PREFIX}orders"
id_column = "id"
status_column = "status"
unpaid_value = "unpaid"
cancelled_value = "cancelled"
cancelled_at_column = "cancelled_at"
TOML

(cd "$here" && "$py" -m flask --app app init-db) >/dev/null || fail "could not create the tables"

(cd "$work" && exec env -u RUST_LOG -u NOTIFY_SOCKET "$kairos" run -c "$work/config.toml") \
  </dev/null >/dev/null 2>"$work/daemon.log" &
daemon_pid=$!
for _ in $(seq 200); do
  grep -q "kairos is running" "$work/daemon.log" 2>/dev/null && break
  kill -0 "$daemon_pid" 2>/dev/null || fail "the daemon exited"
  sleep 0.1
done
grep -q "kairos is running" "$work/daemon.log" || fail "the daemon did not start in 20s"
KAIROS_URL=$(sed -n 's/.*API listening on \([^ ]*\).*/\1/p' "$work/daemon.log" | tail -n1)
[ -n "$KAIROS_URL" ] || fail "the daemon logged no API address"
export KAIROS_URL
say "$("$kairos" --version 2>/dev/null | head -n1) at $KAIROS_URL"

free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_service() { # variable for its URL, name, payment window[, kairos URL]
  local port; port=$(free_port)
  (cd "$here" && PAYMENT_WINDOW=$3 KAIROS_URL=${4:-$KAIROS_URL} exec "$py" -m flask --app app run --host 127.0.0.1 \
    --port "$port") </dev/null >"$work/$2.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    if "$py" -c "import requests; requests.get('http://127.0.0.1:$port/health', timeout=1).raise_for_status()" \
      >/dev/null 2>&1; then
      printf -v "$1" 'http://127.0.0.1:%s' "$port"; export "${1?}"; return 0
    fi
    sleep 0.1
  done
  fail "the $2 service did not start"
}
start_service SERVICE_URL service-30m 30m
start_service SHORT_URL service-2s 2s
# One whose kairos is down (nothing listens there), to show a retry heals the create.
start_service OFFLINE_URL service-offline 30m "http://127.0.0.1:$(free_port)/api/v1"

"$py" "$here/test_e2e.py"
passed=1
