#!/usr/bin/env bash
# The whole test suite, from a fresh Debian/Ubuntu machine: installs what is missing,
# starts PostgreSQL for the storage tests, checks formatting and lints, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
# A whole-suite run builds from scratch or nearly: incremental caches only cost disk and time.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# shellcheck source=scripts/setup.sh
source scripts/setup.sh
install_system_packages
ensure_rust
start_postgres

echo "==> cargo fmt --check, generated docs up to date" >&2
cargo fmt --all --check
python3 scripts/protocol-doc.py --check
echo "==> cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo test" >&2
cargo test --workspace --locked --no-fail-fast "$@"
