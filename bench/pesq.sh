#!/usr/bin/env bash
# Wideband PESQ (P.862.2) of speech through the media pipeline at 0/5/10/20% random and
# 5% bursty loss, with and without FEC and DRED, beside plain libopus losing the same
# packets. Needs python3-venv; creates a venv with pesq numpy scipy soundfile.
# Each lossy condition is scored over MEDIA_BENCH_SEEDS (default 3) loss patterns and averaged.
# Usage: bench/pesq.sh [speech.wav]   (default: media/tests/data/speech_natural_48k.wav, natural
# speech at -26 dBov; media/tests/data/speech_48k.wav is the older synthetic espeak-ng sample)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/pesq_venv.sh
source bench/pesq_venv.sh
SPEECH="${1:-media/tests/data/speech_natural_48k.wav}"
OUT="${PESQ_OUT:-$(mktemp -d)}"
[ -n "${PESQ_OUT:-}" ] || trap 'rm -rf "$OUT"' EXIT
# bench/pesq_dred.sh runs the same with MEDIA_BENCH_MODE=dred-oracle.
cargo run --quiet --release -p media --example media_bench -- "${MEDIA_BENCH_MODE:-pesq-wavs}" "$SPEECH" "$OUT"
"$VENV/bin/python" bench/pesq_table.py "$OUT"
