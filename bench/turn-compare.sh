#!/usr/bin/env bash
# TURN relay comparison: coturn (`turnserver`) against the Peerphone relay
# (supernode/examples/relay_bench.rs, release build), driven by the same
# `turnutils_uclient` load (channels, UDP, REST-API shared-secret credentials) towards one
# `turnutils_peer` echo, all on loopback.
#
# Both servers run pinned to the same CPU (SERVER_CPU, default 1); the load generator and the
# echo peer are pinned to another (CLIENT_CPU, default 0). coturn runs with its defaults
# (one relay thread per CPU it sees), the Peerphone relay on a current-thread tokio runtime.
#
# Reports per server: packets forwarded (client->peer plus peer->client, from uclient's
# counts), forwarded packets per second over the send period, loss (uclient's "Total lost
# packets"), server CPU seconds (utime+stime of the server process from /proc, all threads)
# and CPU seconds per million forwarded packets.
#
# Usage: bench/turn-compare.sh [STREAMS] [PACKETS_PER_STREAM] [INTERVAL_MS] [PAYLOAD_BYTES]
# Defaults: 1000 streams, 500 packets each, 20 ms apart (50 packets/s per stream), 100 bytes.
set -euo pipefail
cd "$(dirname "$0")/.."

streams=${1:-1000}
packets=${2:-500}
interval_ms=${3:-20}
payload=${4:-100}
server_cpu=${SERVER_CPU:-1}
client_cpu=${CLIENT_CPU:-0}
secret=turn-bench-secret
realm=peer

for tool in turnserver turnutils_uclient turnutils_peer taskset; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install coturn util-linux)" >&2; exit 1; }
done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# SKIP_BUILD=1 reuses an existing release build.
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p supernode --example relay_bench >&2
relay_bin=target/release/examples/relay_bench

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

cpu_ticks() { # utime + stime of a whole process (all threads)
  awk '{print $14 + $15}' "/proc/$1/stat"
}

wait_for_stun() { # until the server answers a STUN Binding request
  python3 - "$1" <<'EOF'
import socket, sys, time, os
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.2)
req = bytes.fromhex("000100002112a442") + os.urandom(12)
end = time.time() + 20
while time.time() < end:
    s.sendto(req, ("127.0.0.1", port))
    try:
        s.recvfrom(2048); sys.exit(0)
    except OSError:
        pass
sys.exit("server did not answer STUN within 20 s")
EOF
}

hz=$(getconf CLK_TCK)
peer_port=$(free_port)
taskset -c "$client_cpu" turnutils_peer -L 127.0.0.1 -p "$peer_port" >/dev/null 2>&1 &
pids+=($!)

run_one() { # name, then the server command
  local name=$1; shift
  local port
  port=$(free_port)
  local cmd=("${@//@PORT@/$port}")
  taskset -c "$server_cpu" "${cmd[@]}" >"$tmp/$name.server.log" 2>&1 &
  local spid=$!
  pids+=("$spid")
  wait_for_stun "$port"
  local before after
  before=$(cpu_ticks "$spid")
  taskset -c "$client_cpu" turnutils_uclient -c -m "$streams" -n "$packets" -z "$interval_ms" \
    -l "$payload" -e 127.0.0.1 -r "$peer_port" -W "$secret" -u bench -p "$port" 127.0.0.1 \
    >"$tmp/$name.uclient.log" 2>&1 || true
  after=$(cpu_ticks "$spid")
  kill "$spid" 2>/dev/null || true
  wait "$spid" 2>/dev/null || true
  python3 - "$name" "$tmp/$name.uclient.log" "$before" "$after" "$hz" "$streams" "$packets" "$interval_ms" <<'EOF'
import re, sys
name, log, before, after, hz, streams, packets, interval_ms = sys.argv[1:]
text = open(log, errors="replace").read()
m = re.findall(r"start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)", text)
sent, recv = (int(m[-1][0]), int(m[-1][1])) if m else (0, 0)
lost = re.findall(r"Total lost packets (\d+) \(([\d.]+)%\)", text)
lost_n, lost_pct = (int(lost[-1][0]), float(lost[-1][1])) if lost else (-1, float("nan"))
cpu_s = (int(after) - int(before)) / int(hz)
forwarded = sent + recv
send_period_s = int(packets) * int(interval_ms) / 1000
pps = forwarded / send_period_s if send_period_s else 0
per_million = cpu_s / forwarded * 1e6 if forwarded else float("nan")
expected = int(streams) * int(packets)
print(f"| {name} | {expected} | {sent} | {recv} | {pps:,.0f} | {lost_n} ({lost_pct:.2f}%) | {cpu_s:.2f} | {per_million:.2f} |")
EOF
}

echo "TURN relay comparison: $streams streams x $packets packets, one every $interval_ms ms ($((1000 / interval_ms)) pkt/s per stream), $payload-byte payloads, server on CPU $server_cpu, load on CPU $client_cpu"
echo
echo "| server | packets to send | sent | echoed back | forwarded pkt/s | lost | server CPU s | CPU s per 1M forwarded |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
run_one coturn turnserver -n --listening-ip=127.0.0.1 --listening-port=@PORT@ \
  --relay-ip=127.0.0.1 --min-port=30000 --max-port=39999 --use-auth-secret \
  --static-auth-secret="$secret" --realm="$realm" --allow-loopback-peers --no-tls --no-dtls \
  --no-tcp --no-tcp-relay --no-cli --simple-log --log-file="$tmp/coturn.log" \
  --pidfile="$tmp/coturn.pid" --userdb="$tmp/turndb" --no-software-attribute
run_one peerphone "$relay_bin" --listen 127.0.0.1:@PORT@ --relay-ports 40000-49999 \
  --allow-relay-to 127.0.0.0/8 --secret "$secret" --realm "$realm"
