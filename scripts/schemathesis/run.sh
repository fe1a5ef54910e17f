#!/usr/bin/env bash
# The API contract check: Schemathesis (an OpenAPI fuzzer) against a real
# `fieldsync serve --demo`, once per role (dispatcher, technician, admin),
# with every check (`--checks all`: server errors, status codes, response
# schemas, content types, headers, positive and negative data, methods,
# Allow headers, object-level authorization) and the stateful phase, which
# follows the document's links (create → read → change). Exits non-zero on
# any failure.
#
#   scripts/schemathesis/run.sh [path/to/fieldsync]
#
# Needs `st` (pip install schemathesis==4.32.5); uses $ST or ./.venv-st/bin/st.
# Settings (accepted statuses, NUL bytes, examples per operation) are in
# scripts/schemathesis/schemathesis.toml, each with its reason.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${1:-$root/target/debug/fieldsync}"
st="${ST:-$root/.venv-st/bin/st}"
[ -x "$bin" ] || { echo "no server binary at $bin (build it: cargo build)"; exit 2; }
[ -x "$st" ] || { echo "no Schemathesis at $st (python3 -m venv .venv-st && .venv-st/bin/pip install schemathesis==4.32.5)"; exit 2; }

work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
"$bin" --database "$work/fieldsync.db" serve --demo --port "$port" --blob-dir "$work/blobs" \
  --login-rate-per-ip 100000 >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do
  curl -fsS "$base/api/v1/openapi.json" -o /dev/null 2>/dev/null && break
  kill -0 $server 2>/dev/null || { cat "$work/server.log"; exit 1; }
  sleep 0.1
done

token() {
  curl -fsS "$base/api/v1/auth/login" -H 'Content-Type: application/json' \
    -d "{\"username\":\"$1\",\"password\":\"fieldsync-demo\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}

# CI is reproducible: one fixed seed (a failure can be replayed exactly, and a
# green run stays green until the code or the document changes). Explore
# with other seeds locally: ST_SEED=random (or a number).
seed=()
case "${ST_SEED:-20261207}" in
  random) ;;
  *) seed=(--seed "${ST_SEED:-20261207}") ;;
esac

status=0
cd "$here"   # schemathesis.toml is read from the working directory
for user in dora tom ada; do
  echo "=== Schemathesis as $user"
  # A fresh token per role; the access token lives for the whole run
  # (--access-token-ttl-secs is not lowered here).
  # /events is a server-sent event stream that stays open for the token's
  # lifetime: a request to it never completes (tests/console.rs covers it).
  if ! "$st" run "$base/api/v1/openapi.json" --checks all \
      --exclude-path /api/v1/events \
      -H "Authorization: Bearer $(token "$user")" \
      "${seed[@]}" \
      --report junit --report-dir "$root/target/schemathesis/$user" \
      --no-color; then
    status=1
  fi
done
if [ $status -ne 0 ]; then
  echo "Schemathesis found failures; the server log is below"
  tail -50 "$work/server.log"
fi
exit $status
