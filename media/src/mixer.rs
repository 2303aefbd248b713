//! Conference mixing on the host: up to [`MAX_PARTICIPANTS`] participants, each hears
//! everyone but themselves.
//!
//! The host feeds one 20 ms frame per participant per tick (its own microphone counts as a
//! participant) and gets one mix per participant. Sums of several loud talkers can exceed
//! full scale, so every mix passes a soft limiter: samples up to
//! [`LIMITER_KNEE`] pass unchanged and louder ones bend smoothly towards ±1, never
//! beyond it (no wrap-around or hard clipping distortion).
//!
//! Not here: decoding and re-encoding (each participant's jitter buffer and encoder do
//! that), and who may join (the calls layer).

use std::collections::BTreeMap;

use thiserror::Error;

use crate::codec::FRAME_SAMPLES;

/// Participants a host mixes at most (host included).
pub const MAX_PARTICIPANTS: usize = 5;
/// Level up to which the limiter is transparent.
pub const LIMITER_KNEE: f32 = 0.8;

/// A participant's id within one conference, chosen by the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ParticipantId(pub u32);

/// Why a mix was refused.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum MixError {
    /// More than [`MAX_PARTICIPANTS`] inputs.
    #[error("{count} participants exceed the limit of {MAX_PARTICIPANTS}")]
    TooManyParticipants {
        /// Inputs given.
        count: usize,
    },
    /// An input frame is not 960 samples long.
    #[error("frame of participant {id:?} has {len} samples")]
    FrameLength {
        /// The participant.
        id: ParticipantId,
        /// Its length.
        len: usize,
    },
}

/// Mixes one tick: for every participant in `inputs`, the limited sum of all the others.
pub fn mix_minus(
    inputs: &BTreeMap<ParticipantId, Vec<f32>>,
) -> Result<BTreeMap<ParticipantId, Vec<f32>>, MixError> {
    if inputs.len() > MAX_PARTICIPANTS {
        return Err(MixError::TooManyParticipants {
            count: inputs.len(),
        });
    }
    if let Some((id, frame)) = inputs.iter().find(|(_, f)| f.len() != FRAME_SAMPLES) {
        return Err(MixError::FrameLength {
            id: *id,
            len: frame.len(),
        });
    }
    let mut total = vec![0.0f32; FRAME_SAMPLES];
    for frame in inputs.values() {
        for (t, s) in total.iter_mut().zip(frame) {
            *t += *s;
        }
    }
    Ok(inputs
        .iter()
        .map(|(id, own)| {
            // Subtracting one's own signal from the total is exact in f32 for these
            // magnitudes to well below audibility and costs one pass instead of N.
            let mix = total
                .iter()
                .zip(own)
                .map(|(t, s)| soft_limit(t - s))
                .collect();
            (*id, mix)
        })
        .collect())
}

/// The limiter curve: identity below the knee, a tanh shoulder above it, bounded by ±1.
pub fn soft_limit(x: f32) -> f32 {
    let a = x.abs();
    if !a.is_finite() {
        return if x.is_nan() { 0.0 } else { x.signum() };
    }
    if a <= LIMITER_KNEE {
        return x;
    }
    let room = 1.0 - LIMITER_KNEE;
    (LIMITER_KNEE + room * ((a - LIMITER_KNEE) / room).tanh()).copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn constant(v: f32) -> Vec<f32> {
        vec![v; FRAME_SAMPLES]
    }

    #[test]
    fn each_hears_everyone_but_themselves() {
        let inputs: BTreeMap<_, _> = (0..4u32)
            .map(|i| (ParticipantId(i), constant(0.01 * (i + 1) as f32)))
            .collect();
        let out = mix_minus(&inputs).expect("mix");
        assert_eq!(out.len(), 4);
        // 0.01+0.02+0.03+0.04 = 0.10 in total.
        for (id, mix) in &out {
            let expected = 0.10 - 0.01 * (id.0 + 1) as f32;
            assert!(
                (mix[0] - expected).abs() < 1e-6,
                "{id:?}: {} vs {expected}",
                mix[0]
            );
        }
    }

    #[test]
    fn loud_sums_stay_within_full_scale() {
        let inputs: BTreeMap<_, _> = (0..5u32)
            .map(|i| (ParticipantId(i), constant(0.9)))
            .collect();
        for mix in mix_minus(&inputs).expect("mix").values() {
            assert!(
                mix.iter().all(|s| *s <= 1.0 && *s > LIMITER_KNEE),
                "{}",
                mix[0]
            );
        }
        assert!(soft_limit(-3.0) >= -1.0);
        assert_eq!(soft_limit(0.5), 0.5);
        assert_eq!(soft_limit(f32::NAN), 0.0);
    }

    #[test]
    fn six_participants_are_refused() {
        let inputs: BTreeMap<_, _> = (0..6u32)
            .map(|i| (ParticipantId(i), constant(0.0)))
            .collect();
        assert_eq!(
            mix_minus(&inputs),
            Err(MixError::TooManyParticipants { count: 6 })
        );
    }
}
