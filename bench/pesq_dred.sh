#!/usr/bin/env bash
# FEC against DRED at 20% random loss, wideband PESQ, oracle timing (no jitter buffer):
# which encoder settings make DRED worth its bits. Same venv and knobs as bench/pesq.sh.
# Usage: bench/pesq_dred.sh [speech.wav]   (default: media/tests/data/speech_natural_48k.wav)
set -euo pipefail
cd "$(dirname "$0")/.."
MEDIA_BENCH_MODE=dred-oracle exec bench/pesq.sh "$@"
