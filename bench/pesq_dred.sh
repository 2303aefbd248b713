#!/usr/bin/env bash
# FEC against DRED at 20% random loss, wideband PESQ, oracle timing (no jitter buffer):
# which encoder settings make DRED worth its bits. Same venv and knobs as bench/pesq.sh.
# Usage: bench/pesq_dred.sh [speech.wav]   (default: media/tests/data/speech_natural_48k.wav)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${PESQ_VENV:-$HOME/.cache/peerphone/pesq-venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet pesq numpy scipy soundfile
fi
SPEECH="${1:-media/tests/data/speech_natural_48k.wav}"
OUT="${PESQ_OUT:-$(mktemp -d)}"
[ -n "${PESQ_OUT:-}" ] || trap 'rm -rf "$OUT"' EXIT
cargo run --quiet --release -p media --example media_bench -- dred-oracle "$SPEECH" "$OUT"
"$VENV/bin/python" bench/pesq_table.py "$OUT"
