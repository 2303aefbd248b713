#!/usr/bin/env bash
# Added latency of the media core (0 and 30 ms network jitter) and CPU per call for
# encoding, decoding and encryption, on the committed speech sample.
# Usage: bench/media_core.sh [speech.wav]
set -euo pipefail
cd "$(dirname "$0")/.."
SPEECH="${1:-media/tests/data/speech_natural_48k.wav}"
cargo build --quiet --release -p media --example media_bench
echo "## Added latency"
target/release/examples/media_bench latency "$SPEECH"
echo
echo "## CPU per call"
target/release/examples/media_bench cpu "$SPEECH"
