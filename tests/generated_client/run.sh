#!/usr/bin/env bash
# A client generated from the daemon's own OpenAPI document by a standard generator
# (openapi-python-client, from PyPI) drives a real daemon (target/debug/kairos):
# check_client.py adds, reads, lists, changes, pauses, resumes and removes jobs through
# it. The generator must take the whole document without a warning: a schema it cannot
# model leaves the operations that use it without a typed answer.
#
# With KAIROS_REQUIRE_SERVICES=1 (as .ci/run sets it) a missing python3/venv fails;
# otherwise it prints SKIP. A PyPI that pip cannot reach always fails.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
venv="$here/.venv"

say() { printf '[generated client] %s\n' "$*"; }
fail() { say "FAIL: $*" >&2; exit 1; }
missing() {
  if [ "${KAIROS_REQUIRE_SERVICES:-0}" = 1 ]; then fail "$* (KAIROS_REQUIRE_SERVICES=1)"; fi
  say "SKIP: $*"; exit 0
}

command -v python3 >/dev/null 2>&1 || missing "python3 is not installed"
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 \
  || missing "python3 cannot make a venv (install python3-venv)"

kairos="${KAIROS_BIN:-${CARGO_TARGET_DIR:-$repo/target}/debug/kairos}"
if [ ! -x "$kairos" ]; then
  say "building kairos (cargo build --bin kairos)"
  (cd "$repo" && cargo build --quiet --bin kairos)
fi

# The venv is kept between runs while requirements.txt is unchanged and it works.
venv_works() {
  "$venv/bin/openapi-python-client" --version >/dev/null 2>&1 \
    && "$venv/bin/python" -c 'import httpx, attrs' >/dev/null 2>&1 \
    && cmp -s "$here/requirements.txt" "$venv/requirements.txt"
}
if ! venv_works; then
  say "making the venv from PyPI"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$venv/requirements.txt"
  venv_works || fail "the venv does not work after installing requirements.txt"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/kairos-generated-client-XXXXXX")
daemon_pid=
cleanup() {
  if [ -n "$daemon_pid" ]; then kill "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/jobs"
cat >"$work/config.toml" <<TOML
include = ["jobs/*.toml"]

[jobstores.default]
url = "sqlite://state/kairos.db"

[api]
listen = "127.0.0.1:0"
allowed_tasks = ["command"]
TOML
"$kairos" run --config "$work/config.toml" >"$work/daemon.log" 2>&1 &
daemon_pid=$!
url=
for _ in $(seq 100); do
  url=$(sed -n 's/.*web page on \(http:\/\/[0-9.:]*\)\/.*/\1/p' "$work/daemon.log" | head -n1)
  [ -n "$url" ] && break
  kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/daemon.log" >&2; fail "the daemon exited"; }
  sleep 0.1
done
[ -n "$url" ] || { cat "$work/daemon.log" >&2; fail "the daemon did not say where its API is"; }
say "daemon at $url"

"$venv/bin/python" - "$url/api/v1/openapi.json" "$work/openapi.json" <<'PY'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as answer, open(sys.argv[2], "wb") as out:
    out.write(answer.read())
PY

say "generating the client"
if ! (cd "$work" && "$venv/bin/openapi-python-client" generate --path openapi.json \
      --output-path client --meta none) >"$work/generate.log" 2>&1; then
  cat "$work/generate.log" >&2
  fail "the generator refused the document"
fi
if grep -q 'WARNING' "$work/generate.log"; then
  cat "$work/generate.log" >&2
  fail "the generator could not model part of the document"
fi

PYTHONPATH="$work" "$venv/bin/python" "$here/check_client.py" "$url" \
  || { tail -n 40 "$work/daemon.log" >&2; fail "the generated client did not work"; }
