#!/usr/bin/env bash
# TURN relay comparison: coturn (`turnserver`) against the Peerphone relay
# (supernode/examples/relay_bench.rs, release build), driven by the same
# `turnutils_uclient` load (channels, UDP, REST-API shared-secret credentials) towards
# `turnutils_peer` echoes, all on loopback. UCLIENTS (default 1) load generators share the
# streams, each with its own echo peer.
#
# Both servers run pinned to the same CPU (SERVER_CPU, default 1); the load generator and the
# echo peer are pinned to another (CLIENT_CPU, default 0). coturn runs with its defaults
# (one relay thread per CPU it sees), the Peerphone relay on a current-thread tokio runtime.
#
# Reports per server: packets forwarded (client->peer plus peer->client, from uclient's
# counts), forwarded packets per second over the send period, loss (uclient's "Total lost
# packets"), server CPU seconds (utime+stime of the server process from /proc, all threads)
# and CPU seconds per million forwarded packets, the load side's CPU (uclients and echo
# peers), and the kernel's UDP receive-buffer drops: the host's total (/proc/net/snmp) and
# per socket group (bench/udp_drops.py), which tells whose socket lost the packets.
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
uclients=${UCLIENTS:-1}
secret=turn-bench-secret
realm=peer

for tool in turnserver turnutils_uclient turnutils_peer taskset /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install coturn util-linux)" >&2; exit 1; }
done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# SKIP_BUILD=1 reuses an existing release build.
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p supernode --example relay_bench >&2
relay_bin=${RELAY_BIN:-target/release/examples/relay_bench}
# SERVERS picks which servers run (default both, coturn first).
servers=${SERVERS:-coturn peerphone}

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
# One echo peer per load generator: a single turnutils_peer socket would carry all
# streams' datagrams and overflow first whenever the load CPU is busy elsewhere.
peer_ports=() peer_pids=()
for ((i = 0; i < uclients; i++)); do
  peer_ports+=("$(free_port)")
  taskset -c "$client_cpu" turnutils_peer -L 127.0.0.1 -p "${peer_ports[i]}" >/dev/null 2>&1 &
  peer_pids+=($!)
  pids+=($!)
done
peers_cpu_ticks() {
  local total=0 p
  for p in "${peer_pids[@]}"; do total=$((total + $(cpu_ticks "$p"))); done
  echo "$total"
}

udp_rcvbuf_errors() { # the kernel's UDP receive-buffer drops, all sockets of this host
  awk '/^Udp: [0-9]/ {print $6}' /proc/net/snmp
}

run_one() { # name, then the server command
  local name=$1; shift
  local port
  port=$(free_port)
  local cmd=("${@//@PORT@/$port}")
  taskset -c "$server_cpu" "${cmd[@]}" >"$tmp/$name.server.log" 2>&1 &
  local spid=$!
  pids+=("$spid")
  wait_for_stun "$port"
  local before after peer_before peer_after drops_before drops_after
  before=$(cpu_ticks "$spid")
  peer_before=$(peers_cpu_ticks)
  drops_before=$(udp_rcvbuf_errors)
  python3 bench/udp_drops.py "$tmp/$name.drops" "$port" "$spid" "$(IFS=,; echo "${peer_pids[*]}")" &
  local sampler=$!
  # UCLIENTS load generators share the streams (each is a single-threaded process), all
  # pinned to the load CPU; each one's CPU time comes from /usr/bin/time.
  local per=$((streams / uclients)) i upids=()
  for ((i = 0; i < uclients; i++)); do
    taskset -c "$client_cpu" /usr/bin/time -f "%U %S" -o "$tmp/$name.uclient$i.time" \
      turnutils_uclient -c -m "$per" -n "$packets" -z "$interval_ms" \
      -l "$payload" -e 127.0.0.1 -r "${peer_ports[i]}" -W "$secret" -u "bench$i" -p "$port" 127.0.0.1 \
      >"$tmp/$name.uclient$i.log" 2>&1 &
    upids+=($!)
  done
  for p in "${upids[@]}"; do wait "$p" || true; done
  after=$(cpu_ticks "$spid")
  peer_after=$(peers_cpu_ticks)
  drops_after=$(udp_rcvbuf_errors)
  kill -TERM "$sampler"; wait "$sampler" || true
  kill "$spid" 2>/dev/null || true
  wait "$spid" 2>/dev/null || true
  # The Peerphone relay prints its counters (send errors among them) when stopped.
  grep -h "RelayStats" "$tmp/$name.server.log" >&2 || true
  python3 - "$name" "$tmp" "$uclients" "$before" "$after" "$hz" "$streams" "$packets" "$interval_ms" \
    "$peer_before" "$peer_after" "$drops_before" "$drops_after" <<'EOF'
import re, sys
(name, tmp, uclients, before, after, hz, streams, packets, interval_ms,
 peer_before, peer_after, drops_before, drops_after) = sys.argv[1:]
try:
    listen_drops, relay_drops, peer_drops, load_drops = map(
        int, open(f"{tmp}/{name}.drops").read().split())
except (OSError, ValueError):
    listen_drops = relay_drops = peer_drops = load_drops = -1
hz = int(hz)
sent = recv = 0
client_cpu_s = 0.0
per = int(streams) // int(uclients)
for i in range(int(uclients)):
    text = open(f"{tmp}/{name}.uclient{i}.log", errors="replace").read()
    m = re.findall(r"start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)", text)
    if m:
        sent += int(m[-1][0]); recv += int(m[-1][1])
    try:
        u, s = open(f"{tmp}/{name}.uclient{i}.time").read().split()[-2:]
        client_cpu_s += float(u) + float(s)
    except (OSError, ValueError):
        pass
cpu_s = (int(after) - int(before)) / hz
peer_cpu_s = (int(peer_after) - int(peer_before)) / hz
forwarded = sent + recv
send_period_s = int(packets) * int(interval_ms) / 1000
pps = forwarded / send_period_s if send_period_s else 0
per_million = cpu_s / forwarded * 1e6 if forwarded else float("nan")
expected = per * int(uclients) * int(packets)
# Loss against what was offered: a packet that did not come back is lost, whether the
# relay, the echo peer, a socket buffer or uclient itself (never sending it) dropped it.
loss_pct = (expected - recv) / expected * 100 if expected else float("nan")
drops = int(drops_after) - int(drops_before)
print(f"| {name} | {uclients} | {expected:,} | {sent:,} | {recv:,} | {pps:,.0f} | {loss_pct:.2f}% "
      f"| {drops:,} ({listen_drops:,} / {relay_drops:,} / {peer_drops:,} / {load_drops:,}) | {cpu_s:.2f} | {per_million:.2f} | {client_cpu_s:.2f} + {peer_cpu_s:.2f} |")
EOF
}

echo "TURN relay comparison: $streams streams x $packets packets, one every $interval_ms ms ($((1000 / interval_ms)) pkt/s per stream), $payload-byte payloads, server on CPU $server_cpu, load on CPU $client_cpu"
echo
echo "| server | uclients | packets to send | sent | echoed back | forwarded pkt/s | loss | kernel UDP rcvbuf drops (server listen / relay ports / echo peer / load) | server CPU s | CPU s per 1M forwarded | load CPU s (uclients + peer) |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
[[ " $servers " != *" coturn "* ]] || run_one coturn turnserver -n --listening-ip=127.0.0.1 --listening-port=@PORT@ \
  --relay-ip=127.0.0.1 --min-port=30000 --max-port=39999 --use-auth-secret \
  --static-auth-secret="$secret" --realm="$realm" --allow-loopback-peers --no-tls --no-dtls \
  --no-tcp --no-tcp-relay --no-cli --simple-log --log-file="$tmp/coturn.log" \
  --pidfile="$tmp/coturn.pid" --userdb="$tmp/turndb" --no-software-attribute
[[ " $servers " != *" peerphone "* ]] || run_one peerphone "$relay_bin" --listen 127.0.0.1:@PORT@ --relay-ports 40000-49999 \
  --allow-relay-to 127.0.0.0/8 --secret "$secret" --realm "$realm"
