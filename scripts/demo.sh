#!/usr/bin/env bash
# The main job on the bundled sample: installs what is needed, builds, starts a server on a
# local data directory, streams the sample session (video + signal file) with the client, and
# shows the result. PORT (default 8080) and DATA_DIR (default ./referee-data) can be set.
set -euo pipefail
cd "$(dirname "$0")/.."
port="${PORT:-8080}"
data_dir="${DATA_DIR:-./referee-data}"

scripts/install-deps.sh
cargo build --release --bins

target/release/referee-server --listen "127.0.0.1:$port" --data-dir "$data_dir" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT

# Wait for the server to answer /health.
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  sleep 0.1
done

target/release/referee-client "http://127.0.0.1:$port" \
  --video sample-data/bout.mp4 --signal sample-data/bout.txt | tee /tmp/referee-demo.log

id=$(sed -n 's/^Session started: \([^ ]*\).*/\1/p' /tmp/referee-demo.log)
session="$data_dir/sessions/$id"
echo
echo "== Stored in $session"
ls -l "$session"
echo
echo "== Report page for the referee: $session/report.html (open it in a browser)"
echo "== The session on the dashboard: $(sed -n 's/^Dashboard: //p' /tmp/referee-demo.log) (while the server runs)"
echo
echo "== Signal events lined up with frames ($session/report.json)"
python3 - "$session/report.json" <<'PY' 2>/dev/null || cat "$session/report.json"
import json, sys
report = json.load(open(sys.argv[1]))
print(f"{report['frames']} frames at {report['fps']} fps ({report['duration_s']:.2f} s), video: {report['video']}")
for s in report["segments"]:
    print(f"  action: frames {s['start_frame']}-{s['end_frame']} ({s['start_s']:.2f} s to {s['end_s']:.2f} s)")
for e in report["events"]:
    notes = [" ".join(f"{k}={v}" for k, v in e["fields"].items())]
    action = e.get("action")
    # A halt or a period's start and end ends no action of the fencers.
    if action and e.get("kind") not in ("halt", "period"):
        notes.append(f"action began {action['lead_s']:.1f} s before (frame {action['start_frame']})")
    notes = ", ".join(n for n in notes if n)
    print(f"  {e['time_s']:7.3f} s  {e['name']:<12} -> frame {e['frame_index']:4} ({e['frame_time_s']:.3f} s)  {notes}")
bout = report.get("bout") or {}
if bout.get("timeline"):
    print(f"Score timeline (bout to {bout['target']}):")
    for t in bout["timeline"]:
        e = report["events"][t["event"]]
        score = f"{t['score']['left']}-{t['score']['right']}"
        print(f"  {t['time_s']:7.3f} s  {t['kind']:<10} {t.get('side') or '':<5} {t.get('color') or '':<6} score {score}")
    for f in bout["flags"]:
        print(f"  FLAG line {f['line']}: {f['reason']}")
    for m in bout["marks"]:
        print(f"  REVIEW line {m['line']}: {m['reason']}")
PY
