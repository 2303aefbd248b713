#!/usr/bin/env bash
# Rebuilds media/tests/data/speech_natural_48k.wav, the PESQ speech sample: 11.8 s of a
# natural English reading (LibriVox, public domain) from Debian's pocketsphinx-testdata
# package, two sentences with pauses, active speech level -26 dBov (ITU-T P.862 asks
# for 8-12 s of speech with pauses at a normal level). Needs apt and the PESQ venv.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/pesq_venv.sh
source bench/pesq_venv.sh
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && apt-get download pocketsphinx-testdata >/dev/null && dpkg -x pocketsphinx-testdata_*.deb x)
DIR="$WORK/x/usr/share/pocketsphinx/test/data/librivox"
"$VENV/bin/python" bench/speech_sample.py media/tests/data/speech_natural_48k.wav \
  "$DIR/sense_and_sensibility_01_austen_64kb-0870.wav" \
  "$DIR/sense_and_sensibility_01_austen_64kb-0880.wav"
