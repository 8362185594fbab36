#!/usr/bin/env bash
# The HTTP API checked against its own OpenAPI document (GET /api/openapi.json) with
# schemathesis: a real referee-server (the binaries `cargo build --workspace --bins` made, as
# scripts/test.sh does) on a free port, with a temporary data directory and a token of each
# scope, holding real sessions (the sample bout streamed by the real client and processed, a
# session created ahead of its upload); then every documented operation is called with
# generated, boundary and invalid inputs, real session ids among them. No answer may be a 5xx,
# and every answer must have a documented status, content type, headers and body. Exits
# non-zero on any failure; the server is stopped by its PID, with a deadline.
#
# REFEREE_BIN_DIR: where the binaries are (target/debug, else target/release).
# API_CHECK_EXAMPLES: generated cases per operation in the fuzzing phase (default 30).
# API_CHECK_SEED: schemathesis's seed (default 13: the same cases every run).
# API_CHECK_REPORT_DIR: where to keep the JUnit report (default: deleted with the rest).
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${REFEREE_BIN_DIR:-target/debug}"
if [ ! -x "$bin/referee-server" ] && [ -x target/release/referee-server ]; then
  bin=target/release
fi
for program in referee-server referee-client; do
  if [ ! -x "$bin/$program" ]; then
    echo "api-check: no $bin/$program: build it first (cargo build --workspace --bins)" >&2
    exit 1
  fi
done
if ! command -v schemathesis >/dev/null 2>&1; then
  echo "api-check: schemathesis is not installed: run scripts/install-deps.sh --tests" >&2
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/referee-api-check.XXXXXX")
server_pid=""
# Stops the server: SIGTERM (it finishes what it is doing within its --shutdown-timeout-secs),
# then SIGKILL if it is still there after 15 s.
stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 150); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$server_pid" 2>/dev/null; then
      echo "api-check: the server did not stop within 15 s of SIGTERM: killed" >&2
      kill -KILL "$server_pid" 2>/dev/null || true
    fi
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
cleanup() {
  stop_server
  rm -rf "$work"
}
trap cleanup EXIT

token() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }
REFEREE_TOKEN=$(token)
REFEREE_WATCH_TOKEN=$(token)
REFEREE_ADMIN_TOKEN=$(token)
export REFEREE_TOKEN REFEREE_WATCH_TOKEN REFEREE_ADMIN_TOKEN
# The client's state files stay in the temporary directory.
export REFEREE_STATE_DIR="$work/state"

# Limits out of the way: schemathesis creates sessions by the hundred from one address, and
# the disk's free space is not what is checked here (the limits have their own tests).
# Every request traced (tower-http's trace layer), to count the answers afterwards.
REFEREE_LOG_LEVEL=info,tower_http=debug "$bin/referee-server" --listen 127.0.0.1:0 --data-dir "$work/data" \
  --max-sessions 1000000 --max-sessions-per-client 1000000 --min-free-disk-bytes 0 \
  --shutdown-timeout-secs 5 >"$work/server.log" 2>&1 &
server_pid=$!

port=""
for _ in $(seq 1 300); do
  port=$(sed -n 's|.* listening on http://127\.0\.0\.1:\([0-9]*\) .*|\1|p' "$work/server.log" | head -n 1)
  [ -n "$port" ] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    break
  fi
  sleep 0.1
done
if [ -z "$port" ]; then
  echo "api-check: the server did not start within 30 s; its log:" >&2
  cat "$work/server.log" >&2
  exit 1
fi
base="http://127.0.0.1:$port"
echo "api-check: referee-server on $base (data in $work/data)"

# Real sessions: the sample bout, streamed and processed (video, report, thumbnails, clips),
# and one created ahead of its upload, which nobody streams into (and one more for DELETE).
"$bin/referee-client" "$base" --video sample-data/bout.mp4 --signal sample-data/bout.txt \
  >"$work/client.log" 2>&1 || {
  echo "api-check: streaming the sample bout failed:" >&2
  cat "$work/client.log" >&2
  exit 1
}
complete=$(sed -n 's/^Session started: \([^ ]*\).*/\1/p' "$work/client.log")
"$bin/referee-client" create "$base" "api check" >"$work/create.log" 2>&1 || {
  cat "$work/create.log" >&2
  exit 1
}
created=$(sed -n 's/^Created session \([^ ]*\).*/\1/p' "$work/create.log")
# One for DELETE to take (the others stay for every other operation).
"$bin/referee-client" create "$base" "api check delete" >"$work/doomed.log" 2>&1 || {
  cat "$work/doomed.log" >&2
  exit 1
}
doomed=$(sed -n 's/^Created session \([^ ]*\).*/\1/p' "$work/doomed.log")
if [ -z "$complete" ] || [ -z "$created" ] || [ -z "$doomed" ]; then
  echo "api-check: no session id in the client's output:" >&2
  cat "$work/client.log" "$work/create.log" "$work/doomed.log" >&2
  exit 1
fi
echo "api-check: sessions $complete (complete) and $created (created ahead)"
# The complete session's real thumbnails, clips and frames, as TOML lists.
names=$(python3 - "$base" "$complete" <<'PY'
import json, sys, urllib.request
base, id = sys.argv[1], sys.argv[2]
request = urllib.request.Request(f"{base}/api/sessions/{id}")
request.add_header("Authorization", "Bearer " + __import__("os").environ["REFEREE_WATCH_TOKEN"])
session = json.load(urllib.request.urlopen(request, timeout=10))
links = session["links"]
last = session["frames_stored"] - 1
print("thumbnails =", json.dumps([t.rsplit("/", 1)[1] for t in links.get("thumbnails", [])]))
print("clips =", json.dumps([c.rsplit("/", 1)[1] for c in links.get("clips", [])]))
print("frames =", json.dumps(["0.jpg", f"{last}.jpg", f"{last + 1}.jpg"]))
PY
)
thumbnails=$(sed -n 's/^thumbnails = //p' <<<"$names")
clips=$(sed -n 's/^clips = //p' <<<"$names")
frames=$(sed -n 's/^frames = //p' <<<"$names")
if [ "$thumbnails" = "[]" ] || [ "$clips" = "[]" ]; then
  echo "api-check: the sample session has no thumbnails or no clips: $names" >&2
  exit 1
fi

# Every operation half the time with a real session's id (and a real thumbnail's, clip's or
# frame's name, and a real byte range), but DELETE, which gets a session of its own; and the admin token, which
# grants every scope. The waits a watcher may ask for (`timeout`) are set, not generated:
# fuzzing them would only wait; an event stream is read up to its first event or for 2 s (it
# never ends by itself).
cat >"$work/schemathesis.toml" <<EOF
headers = { Authorization = "Bearer \${REFEREE_ADMIN_TOKEN}" }
request-timeout = 10.0
max-stream-events = 1

# Nothing kept between runs (no crash cache in the work tree).
[cache]
enabled = false

[generation]
max-examples = ${API_CHECK_EXAMPLES:-30}

[dictionaries.sessions]
values = ["$complete", "$created"]

[dictionaries.finished]
values = ["$complete"]

[dictionaries.doomed]
values = ["$doomed"]

[dictionaries.thumbnails]
values = $thumbnails

[dictionaries.clips]
values = $clips

[dictionaries.frames]
values = $frames

[dictionaries.ranges]
values = ["bytes=0-99", "bytes=-100", "bytes=100-", "bytes=5-4", "bytes=999999999-", "bytes=0-1,5-9", "items=0-1"]

[parameters]
"path.id" = { dictionary = "sessions", probability = 0.5 }
"header.Range" = { dictionary = "ranges", probability = 0.5 }

[[operations]]
include-method = "DELETE"
parameters = { "path.id" = { dictionary = "doomed", probability = 0.5 } }

[[operations]]
include-path-regex = '/(video|video[.]mp4|report[.]json|report[.]html)$'
parameters = { "path.id" = { dictionary = "finished", probability = 0.5 } }

[[operations]]
include-path = "/api/sessions/{id}/thumbnails/{name}"
parameters = { "path.id" = { dictionary = "finished", probability = 0.5 }, "path.name" = { dictionary = "thumbnails", probability = 0.5 } }

[[operations]]
include-path = "/api/sessions/{id}/clips/{name}"
parameters = { "path.id" = { dictionary = "finished", probability = 0.5 }, "path.name" = { dictionary = "clips", probability = 0.5 } }

[[operations]]
include-path = "/api/sessions/{id}/frames/{file}"
parameters = { "path.id" = { dictionary = "sessions", probability = 0.5 }, "path.file" = { dictionary = "frames", probability = 0.5 } }

[[operations]]
include-path = "/api/events"
request-timeout = 2.0

[[operations]]
include-path = "/api/sessions/{id}/events"
request-timeout = 2.0
parameters = { "path.id" = { dictionary = "sessions", probability = 0.5 }, "query.timeout" = 1 }

[[operations]]
include-path = "/api/sessions/{id}/live.mjpeg"
parameters = { "path.id" = { dictionary = "sessions", probability = 0.5 }, "query.timeout" = 0 }
EOF

started=$(date +%s)
status=0
# No example database either: nothing is written outside the temporary directory. One
# worker: with two, schemathesis 4.32's coverage phase failed in Hypothesis itself (its AST
# cache is not thread-safe) on 2 cores. A fixed seed repeats the same cases on every run
# (API_CHECK_SEED for others).
schemathesis --no-color --config-file "$work/schemathesis.toml" run "$base/api/openapi.json" \
  --phases examples,coverage,fuzzing \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --workers 1 --seed "${API_CHECK_SEED:-13}" --generation-database none \
  --report junit --report-dir "${API_CHECK_REPORT_DIR:-$work/report}" || status=$?
echo "api-check: schemathesis took $(($(date +%s) - started)) s"

# A panic (of a handler, or of a task beside it) fails the check even if no answer showed it.
if grep -q 'panicked' "$work/server.log"; then
  echo "api-check: the server panicked:" >&2
  grep -B2 -A5 'panicked' "$work/server.log" | tail -n 40 >&2
  status=1
fi
stop_server
# What the server answered, by status, and how many of those were a real session's results.
echo "api-check: answers by status: $(sed -n 's/.*finished processing request.* status=\([0-9]*\).*/\1/p' \
  "$work/server.log" | sort | uniq -c | awk '{printf "%s×%s ", $2, $1}')"
if [ "$status" -ne 0 ]; then
  echo "api-check: FAILED (schemathesis exit code $status)" >&2
  exit "$status"
fi
echo "api-check: passed"
