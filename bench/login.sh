#!/usr/bin/env bash
# Login-server benchmark on SQLite and PostgreSQL: password logins per second and p50/p99
# latency of buddy-list and lookup requests (see login-server/examples/login_bench.rs).
#
# PostgreSQL: PEERPHONE_BENCH_POSTGRES (a database URL the benchmark may fill), else a
# throwaway cluster started here with initdb/pg_ctl (as the postgres user when run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p login-server --example login_bench >&2
bin=target/release/examples/login_bench

echo "### SQLite"
"$bin"

url="${PEERPHONE_BENCH_POSTGRES:-}"
cleanup() { :; }
if [ -z "$url" ]; then
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
  tmp=$(mktemp -d)
  run=()
  if [ "$(id -u)" = 0 ]; then chown postgres "$tmp"; run=(runuser -u postgres --); fi
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "${run[@]}" "$pgbin/initdb" -D "$tmp/data" -A trust -U postgres >/dev/null
  "${run[@]}" "$pgbin/pg_ctl" -D "$tmp/data" -l "$tmp/log" -w \
    -o "-p $port -k $tmp -c listen_addresses=127.0.0.1" start >/dev/null
  cleanup() { "${run[@]}" "$pgbin/pg_ctl" -D "$tmp/data" -m fast stop >/dev/null; rm -rf "$tmp"; }
  url="postgres://postgres@127.0.0.1:$port/postgres"
fi
trap cleanup EXIT
echo
echo "### PostgreSQL"
"$bin" "$url"
