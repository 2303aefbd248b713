#!/usr/bin/env bash
# Chat history store benchmark: messages persisted per second by app::history (send,
# receipts, receive with its window) against a bare one-row INSERT per transaction measured
# in the same run, at both durability levels; search and paging latency.
# See app/examples/chat_history_bench.rs. Argument: messages per row (default 5000).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p app --example chat_history_bench >&2
# The temp dir decides the file system the database lives on.
exec target/release/examples/chat_history_bench "${1:-5000}"
