#!/usr/bin/env bash
# Call setup on loopback through the real binaries: a login server, one supernode, `bob`
# running `peerphone online --auto-answer`, and `alice` placing N calls with
# `peerphone call bob --seconds 1`. Prints p50/p95 of dial → ringing (`call_ringing.setup_ms`)
# and dial → media path selected (`call_connected.setup_ms`); their difference is answer →
# first audio (auto-answer answers at the ring; audio flows once the path is selected).
# Baseline in the same run: `peerphone search bob` wall time (process start, login from the
# profile, homing, one supernode round trip), to show what the per-call figures exclude.
#
# Usage: bench/call_setup.sh [N]   (debug build, the workspace's dev profile)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20}
cargo build -p login-server -p supernode -p app >&2
bin=target/debug
tmp=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

printf '[admission]\npolicy = "open"\nallow-loopback = true\n' >"$tmp/login.toml"
"$bin/login-server" --config "$tmp/login.toml" --listen 127.0.0.1:0 --data-dir "$tmp/login" \
  >"$tmp/login.out" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$tmp/login.out" && break; sleep 0.1; done
login=$(sed -n 's/.*quic=\([^ ]*\).*/\1/p' "$tmp/login.out")
key=$(sed -n 's/.*authority=\([^ ]*\).*/\1/p' "$tmp/login.out")
"$bin/supernode" --login-server "$login" --authority-key "$key" \
  --listen "127.0.0.1:$(free_port)" --turn-listen "127.0.0.1:$(free_port)" \
  --relay-ports 47000-47099 --allow-relay-to 127.0.0.0/8 --data-dir "$tmp/sn" 2>/dev/null &
pids+=($!)

export PEERPHONE_PASSWORD="correct horse battery staple"
pp() { local who=$1; shift; "$bin/peerphone" --profile "$tmp/$who" --login-server "$login" --authority-key "$key" --json "$@"; }
pp alice register alice >/dev/null
pp bob register bob >/dev/null
pp bob online --auto-answer >"$tmp/bob.out" 2>/dev/null &
pids+=($!)
for _ in $(seq 300); do grep -q logged_in "$tmp/bob.out" && break; sleep 0.1; done

: >"$tmp/search.ms"
for _ in $(seq "$n"); do
  start=$(date +%s%N)
  pp alice search bob >/dev/null 2>>"$tmp/errors" || true
  echo $(( ($(date +%s%N) - start) / 1000000 )) >>"$tmp/search.ms"
done
: >"$tmp/calls.out"
for _ in $(seq "$n"); do
  pp alice call bob --seconds 1 >>"$tmp/calls.out" 2>>"$tmp/errors" || true
done

grep -h "peerphone: error" "$tmp/errors" 2>/dev/null | sort | uniq -c >&2 || true
python3 - "$tmp/calls.out" "$tmp/search.ms" "$n" <<'EOF'
import json, sys
ringing, connected = [], []
for line in open(sys.argv[1]):
    event = json.loads(line)
    if event.get("event") == "call_ringing":
        ringing.append(event["setup_ms"])
    elif event.get("event") == "call_connected":
        connected.append(event["setup_ms"])
search = [int(l) for l in open(sys.argv[2]) if l.strip()]
answer = [c - r for r, c in zip(ringing, connected)]
def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] if values else float("nan")
print(f"calls: {len(connected)} of {sys.argv[3]} connected")
print("| measure | p50 ms | p95 ms | goal |")
print("| --- | --- | --- | --- |")
print(f"| dial → ringing | {pct(ringing, 50)} | {pct(ringing, 95)} | ≤ 300 |")
print(f"| answer → first audio (path selected) | {pct(answer, 50)} | {pct(answer, 95)} | ≤ 100 |")
print(f"| dial → connected | {pct(connected, 50)} | {pct(connected, 95)} | |")
print(f"| baseline: `peerphone search` process wall time | {pct(search, 50)} | {pct(search, 95)} | |")
EOF
