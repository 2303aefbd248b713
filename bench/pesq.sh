#!/usr/bin/env bash
# Wideband PESQ (P.862.2) of speech through the media pipeline at 0/5/10/20% random and
# 5% bursty loss, with and without FEC and DRED, beside plain libopus losing the same
# packets. Needs python3-venv; creates a venv with pesq numpy scipy soundfile.
# Each lossy condition is scored over MEDIA_BENCH_SEEDS (default 3) loss patterns and averaged.
# Usage: bench/pesq.sh [speech.wav]   (default: media/tests/data/speech_natural_48k.wav, natural
# speech at -26 dBov; media/tests/data/speech_48k.wav is the older synthetic espeak-ng sample)
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
cargo run --quiet --release -p media --example media_bench -- pesq-wavs "$SPEECH" "$OUT"
"$VENV/bin/python" bench/pesq_table.py "$OUT"
