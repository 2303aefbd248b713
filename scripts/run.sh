#!/usr/bin/env bash
# Runs the desktop app on the embedded local network (a login server, a supernode and an
# echo-test account in-process), from a fresh Debian/Ubuntu machine. Extra arguments go to
# `peerphone`; e.g. `scripts/run.sh --profile /tmp/alice`.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/setup.sh
source scripts/setup.sh
install_system_packages
ensure_rust
cargo build --release --locked -p app --bin peerphone
if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
  echo "==> no display found: running under Xvfb (xvfb-run)" >&2
  exec xvfb-run -a -s "-screen 0 1280x800x24" target/release/peerphone "$@"
fi
exec target/release/peerphone "$@"
