#!/usr/bin/env python3
"""Builds the PESQ speech sample: utterances joined with pauses, set to an active speech
level of -26 dBov (ITU-T P.56 method B, simplified), resampled to 48 kHz mono 16-bit.

Usage: speech_sample.py OUT.wav UTTERANCE.wav...   (16 kHz mono inputs)
"""
import sys

import numpy as np
import soundfile as sf
from scipy.signal import lfilter, resample_poly

RATE = 16000
TARGET_DBOV = -26.0
PAUSE_SECONDS = 0.6
LEAD_SECONDS = 0.5


def active_level_db(x):
    """P.56 method B: envelope (two 30 ms one-pole smoothers), 200 ms hangover, and the
    threshold at which the active level sits 15.9 dB above it. Returns (dB, activity)."""
    g = np.exp(-1 / (RATE * 0.03))
    env = lfilter([1 - g], [1, -g], lfilter([1 - g], [1, -g], np.abs(x)))
    hang = int(0.2 * RATE)
    energy = np.sum(x**2)
    for threshold_db in np.arange(-100.0, 0.0, 0.5):
        above = np.flatnonzero(env >= 10 ** (threshold_db / 20))
        if above.size == 0:
            break
        marks = np.zeros(len(x) + hang + 1)
        np.add.at(marks, above, 1)
        np.add.at(marks, above + hang, -1)
        active = np.count_nonzero(np.cumsum(marks)[: len(x)] > 0)
        level = 10 * np.log10(energy / active + 1e-20)
        if level - threshold_db <= 15.9:
            return level, active / len(x)
    return 10 * np.log10(energy / len(x) + 1e-20), 1.0


def main(out, inputs):
    parts = [np.zeros(int(LEAD_SECONDS * RATE))]
    for path in inputs:
        x, rate = sf.read(path, dtype="float64")
        assert rate == RATE and x.ndim == 1, f"{path}: need {RATE} Hz mono"
        parts += [x, np.zeros(int(PAUSE_SECONDS * RATE))]
    x = np.concatenate(parts)
    level, activity = active_level_db(x)
    x *= 10 ** ((TARGET_DBOV - level) / 20)
    level, _ = active_level_db(x)
    print(
        f"{len(x) / RATE:.1f} s, speech activity {activity * 100:.0f}%, "
        f"active level {level:.1f} dBov, peak {20 * np.log10(np.abs(x).max()):.1f} dBFS"
    )
    sf.write(out, resample_poly(x, 3, 1), 48000, subtype="PCM_16")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
