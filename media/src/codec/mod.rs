//! Opus voice codec: 48 kHz mono, 20 ms frames, VOIP application.
//!
//! [`Encoder`] turns 960-sample frames of `f32` PCM into Opus packets with in-band FEC
//! (LBRR) sized by the expected loss the caller feeds in ([`Encoder::set_expected_loss_pct`],
//! normally the peer's measured loss) and, with the `dred` feature, Deep REDundancy, sent
//! only while the (averaged) expected loss is high, sized to reach back the few frames a
//! jitter buffer can wait for.
//! [`Decoder`] decodes packets, recovers a lost frame from the next packet's FEC or from a
//! later packet's DRED, and conceals (deep PLC and OSCE enhancement with the `osce` feature
//! at decoder complexity 5 and up).
//!
//! Not here: when to recover or conceal (the [`crate::jitter`] buffer decides), packet
//! framing and encryption ([`crate::packet`], [`crate::secure`]).

mod ffi;

use opusic_sys as sys;
use thiserror::Error;

/// Sample rate of every PCM buffer in the media pipeline.
pub const SAMPLE_RATE_HZ: u32 = 48_000;
/// Samples in one 20 ms frame at 48 kHz mono.
pub const FRAME_SAMPLES: usize = 960;
/// Duration of one frame.
pub const FRAME_MILLIS: u64 = 20;
/// Largest Opus packet this pipeline produces (libopus recommends 1275 for one frame).
pub const MAX_PACKET_BYTES: usize = 1275;

/// An error from libopus.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum CodecError {
    /// The caller passed a frame that is not exactly [`FRAME_SAMPLES`] long.
    #[error("frame has {got} samples, expected {FRAME_SAMPLES}")]
    FrameLength {
        /// Samples that were passed.
        got: usize,
    },
    /// libopus rejected the call (invalid or corrupt packet, bad argument).
    #[error("libopus error {code}")]
    Opus {
        /// The negative `OPUS_*` error code.
        code: i32,
    },
}

impl From<ffi::OpusCode> for CodecError {
    fn from(code: ffi::OpusCode) -> Self {
        CodecError::Opus { code: code.0 }
    }
}

/// Default voice bitrate. The top of the 24 to 32 kbit/s range: libopus only spends
/// in-band FEC bits at moderate expected loss with this much room (docs/bench/media.md).
pub const DEFAULT_BITRATE_BPS: u32 = 32_000;

/// Default [`EncoderConfig::dred_duration_10ms`]: 100 ms, enough for the 2 to 3 frames a
/// jitter buffer waits for at high loss. At 20% random loss FEC + DRED (with the jitter
/// buffer's [`crate::jitter::JitterConfig::dred_extra_frames`]) scored 3.22 against 3.10
/// for FEC alone, mean wideband PESQ over 6 loss patterns (docs/bench/media.md).
pub const DEFAULT_DRED_DURATION_10MS: u8 = 10;
/// Default [`EncoderConfig::dred_min_loss_pct`]: at 5% loss DRED cost 0.2 PESQ (fewer
/// bits for the main coding) and rebuilt little that FEC did not.
pub const DRED_MIN_LOSS_PCT: u8 = 15;
/// Default [`EncoderConfig::dred_complexity`]. At 20% random loss FEC + DRED scored the
/// same PESQ with complexity 6 as with 10 while DRED is sent (3.22 both, 6 patterns; 7 and
/// 8 gave 3.19 and 3.22), and 6 saves about a fifth of the encoder's time there, which
/// keeps a call at high loss within 2% of a core (docs/bench/media.md).
pub const DEFAULT_DRED_COMPLEXITY: u8 = 6;
/// Default [`EncoderConfig::dred_expected_loss_pct`].
pub const DRED_EXPECTED_LOSS_PCT: u8 = 30;

/// Encoder settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderConfig {
    /// Target bitrate (24 to 32 kbit/s for voice; 32 kbit/s by default because in-band FEC
    /// only switches on at 5% expected loss with that much room, see docs/bench/media.md).
    pub bitrate_bps: u32,
    /// Encoder complexity, 0 (cheapest) to 10 (the default; in wideband it still costs
    /// less CPU than complexity 9 in fullband, docs/bench/media.md), used while no DRED is
    /// sent.
    pub complexity: u8,
    /// Encoder complexity while DRED is sent ([`DEFAULT_DRED_COMPLEXITY`] by default). DRED's
    /// neural encoder costs the same at any complexity; lowering SILK's search while it runs
    /// keeps a call at high loss within its CPU budget.
    pub dred_complexity: u8,
    /// In-band FEC (LBRR). It only costs bits while the expected loss is above zero.
    pub fec: bool,
    /// Deep REDundancy length in 10 ms units (0 disables; 100 = 1 s; 100 ms by default).
    /// Needs the `dred` feature; ignored without it. DRED is only sent while the expected
    /// loss is at least [`EncoderConfig::dred_min_loss_pct`], so below that the packets
    /// are the same as without it.
    pub dred_duration_10ms: u8,
    /// Expected loss (percent) from which DRED is sent. Below it DRED would take bits
    /// from the main coding and LBRR for frames that FEC already recovers.
    pub dred_min_loss_pct: u8,
    /// Expected loss (percent) told to libopus while DRED is sent (the measured loss if
    /// that is higher). libopus sizes DRED from the expected loss: with FEC on at 32
    /// kbit/s and ~20% it gives DRED one 40 ms chunk, which does not reach back past its
    /// own offset to the frame before the packet; at 30 to 40% it gets several chunks and
    /// reaches back the 2 to 3 frames a jitter buffer can wait for. LBRR is coded the
    /// same from 20% loss up (SILK's LBRR gain step bottoms out there).
    pub dred_expected_loss_pct: u8,
    /// Initial expected packet loss in percent; later updated from measurements.
    pub expected_loss_pct: u8,
    /// Widest audio band the encoder may code. Wideband by default: at 24 to 32 kbit/s
    /// SILK-only wideband spends every bit below 8 kHz, where speech lives and wideband
    /// PESQ listens; super-wideband and fullband switch to hybrid mode, which spends part
    /// of the budget above 8 kHz and scored 0.07 lower at 0% loss (docs/bench/media.md).
    pub max_bandwidth: Bandwidth,
}

/// Audio bandwidth an Opus encoder may code (libopus `OPUS_BANDWIDTH_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bandwidth {
    /// 0 to 8 kHz (16 kHz sampling inside the codec).
    Wide,
    /// 0 to 12 kHz.
    SuperWide,
    /// 0 to 20 kHz.
    Full,
}

impl Bandwidth {
    fn opus_constant(self) -> i32 {
        match self {
            Bandwidth::Wide => sys::OPUS_BANDWIDTH_WIDEBAND,
            Bandwidth::SuperWide => sys::OPUS_BANDWIDTH_SUPERWIDEBAND,
            Bandwidth::Full => sys::OPUS_BANDWIDTH_FULLBAND,
        }
    }
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self {
            bitrate_bps: DEFAULT_BITRATE_BPS,
            complexity: 10,
            dred_complexity: DEFAULT_DRED_COMPLEXITY,
            fec: true,
            dred_duration_10ms: DEFAULT_DRED_DURATION_10MS,
            dred_min_loss_pct: DRED_MIN_LOSS_PCT,
            dred_expected_loss_pct: DRED_EXPECTED_LOSS_PCT,
            expected_loss_pct: 0,
            max_bandwidth: Bandwidth::Wide,
        }
    }
}

/// Opus encoder for 20 ms mono frames at 48 kHz.
pub struct Encoder {
    raw: ffi::RawEncoder,
    config: EncoderConfig,
    /// Expected loss last told to libopus.
    fed_loss_pct: Option<u8>,
    /// DRED length last told to libopus (10 ms units).
    dred_10ms: Option<u8>,
    /// Complexity last told to libopus.
    complexity: Option<u8>,
    /// Smoothed expected loss that switches DRED on and off (percent).
    dred_loss_avg_pct: f32,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("config", &self.config)
            .finish()
    }
}

impl Encoder {
    /// Creates an encoder with `config`.
    pub fn new(config: EncoderConfig) -> Result<Self, CodecError> {
        let mut raw = ffi::RawEncoder::new(SAMPLE_RATE_HZ as i32, 1, sys::OPUS_APPLICATION_VOIP)?;
        raw.set_int(sys::OPUS_SET_SIGNAL_REQUEST, sys::OPUS_SIGNAL_VOICE)?;
        raw.set_int(
            sys::OPUS_SET_BITRATE_REQUEST,
            config.bitrate_bps.min(510_000) as i32,
        )?;
        raw.set_int(
            sys::OPUS_SET_MAX_BANDWIDTH_REQUEST,
            config.max_bandwidth.opus_constant(),
        )?;
        raw.set_int(sys::OPUS_SET_INBAND_FEC_REQUEST, i32::from(config.fec))?;
        let mut encoder = Self {
            raw,
            config,
            fed_loss_pct: None,
            dred_10ms: None,
            complexity: None,
            dred_loss_avg_pct: f32::from(config.expected_loss_pct.min(100)),
        };
        encoder.apply_expected_loss(config.expected_loss_pct.min(100))?;
        Ok(encoder)
    }

    /// Tells libopus the expected loss and DRED length that `loss_pct` calls for.
    fn apply_expected_loss(&mut self, loss_pct: u8) -> Result<(), CodecError> {
        let dred_on = cfg!(feature = "dred")
            && self.config.dred_duration_10ms > 0
            && self.dred_loss_avg_pct >= f32::from(self.config.dred_min_loss_pct);
        let (fed_loss_pct, dred_10ms, complexity) = if dred_on {
            (
                loss_pct.max(self.config.dred_expected_loss_pct).min(100),
                self.config.dred_duration_10ms.min(100),
                self.config.dred_complexity.min(10),
            )
        } else {
            (loss_pct, 0, self.config.complexity.min(10))
        };
        if self.complexity != Some(complexity) {
            self.raw
                .set_int(sys::OPUS_SET_COMPLEXITY_REQUEST, i32::from(complexity))?;
            self.complexity = Some(complexity);
        }
        if self.fed_loss_pct != Some(fed_loss_pct) {
            self.raw.set_int(
                sys::OPUS_SET_PACKET_LOSS_PERC_REQUEST,
                i32::from(fed_loss_pct),
            )?;
            self.fed_loss_pct = Some(fed_loss_pct);
        }
        #[cfg(feature = "dred")]
        if self.dred_10ms != Some(dred_10ms) {
            self.raw
                .set_int(sys::OPUS_SET_DRED_DURATION_REQUEST, i32::from(dred_10ms))?;
        }
        self.dred_10ms = Some(dred_10ms);
        Ok(())
    }

    /// Complexity libopus is using now ([`EncoderConfig::dred_complexity`] while DRED is
    /// sent, else [`EncoderConfig::complexity`]).
    pub fn complexity_in_force(&mut self) -> Result<u8, CodecError> {
        Ok(self
            .raw
            .get_int(sys::OPUS_GET_COMPLEXITY_REQUEST)?
            .clamp(0, 10) as u8)
    }

    /// Whether packets currently carry Deep REDundancy (DRED configured and the expected
    /// loss at least [`EncoderConfig::dred_min_loss_pct`]).
    pub fn dred_active(&self) -> bool {
        self.dred_10ms.is_some_and(|d| d > 0)
    }

    /// The settings in force.
    pub fn config(&self) -> EncoderConfig {
        self.config
    }

    /// Tells the encoder how much loss to protect against (FEC and DRED size themselves
    /// from this; DRED switches on and off at [`EncoderConfig::dred_min_loss_pct`]).
    ///
    /// Callers measure loss over short intervals (calls: every second, 50 packets), which
    /// at 10% loss reads 15% or more about one time in eight. DRED therefore follows an exponential
    /// average of the values fed here (a fifth of each new value), so it neither flickers
    /// on at moderate loss nor off at high loss; FEC follows each value at once.
    pub fn set_expected_loss_pct(&mut self, loss_pct: u8) -> Result<(), CodecError> {
        let loss_pct = loss_pct.min(100);
        self.dred_loss_avg_pct += (f32::from(loss_pct) - self.dred_loss_avg_pct) * 0.2;
        self.apply_expected_loss(loss_pct)?;
        self.config.expected_loss_pct = loss_pct;
        Ok(())
    }

    /// Changes the target bitrate.
    pub fn set_bitrate_bps(&mut self, bitrate_bps: u32) -> Result<(), CodecError> {
        self.raw.set_int(
            sys::OPUS_SET_BITRATE_REQUEST,
            bitrate_bps.clamp(6_000, 510_000) as i32,
        )?;
        self.config.bitrate_bps = bitrate_bps;
        Ok(())
    }

    /// Codec delay in samples (the encoder's lookahead), part of the pipeline latency.
    pub fn lookahead_samples(&mut self) -> Result<u32, CodecError> {
        Ok(self.raw.get_int(sys::OPUS_GET_LOOKAHEAD_REQUEST)?.max(0) as u32)
    }

    /// Encodes one frame of exactly [`FRAME_SAMPLES`] samples in `[-1, 1]`; returns the
    /// packet.
    pub fn encode(&mut self, pcm: &[f32]) -> Result<Vec<u8>, CodecError> {
        if pcm.len() != FRAME_SAMPLES {
            return Err(CodecError::FrameLength { got: pcm.len() });
        }
        let mut out = vec![0u8; MAX_PACKET_BYTES];
        let n = self.raw.encode_float(pcm, &mut out)?;
        out.truncate(n);
        Ok(out)
    }
}

/// Decoder settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderConfig {
    /// Decoder complexity 0..=10. At 5 and above libopus uses deep PLC, at 6 LACE and at 7
    /// NoLACE speech enhancement (needs the `osce` feature; otherwise plain PLC). 6 by
    /// default: NoLACE scored no better at 32 kbit/s and costs twice the CPU.
    pub complexity: u8,
    /// Use Deep REDundancy from later packets to rebuild lost frames (`dred` feature).
    pub dred: bool,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            complexity: 6,
            dred: cfg!(feature = "dred"),
        }
    }
}

/// How a frame of decoder output was produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Recovery {
    /// Decoded from the frame's own packet.
    Decoded,
    /// Rebuilt from the in-band FEC of the following packet.
    Fec,
    /// Rebuilt from the Deep REDundancy of a later packet.
    Dred,
    /// Invented by packet-loss concealment.
    Concealed,
}

/// Opus decoder for 20 ms mono frames at 48 kHz, with loss recovery.
pub struct Decoder {
    raw: ffi::RawDecoder,
    config: DecoderConfig,
    #[cfg(feature = "dred")]
    dred: Option<DredState>,
}

#[cfg(feature = "dred")]
struct DredState {
    decoder: ffi::RawDredDecoder,
    parsed: ffi::RawDred,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("config", &self.config)
            .finish()
    }
}

impl Decoder {
    /// Creates a decoder with `config`.
    pub fn new(config: DecoderConfig) -> Result<Self, CodecError> {
        let mut raw = ffi::RawDecoder::new(SAMPLE_RATE_HZ as i32, 1)?;
        raw.set_int(
            sys::OPUS_SET_COMPLEXITY_REQUEST,
            i32::from(config.complexity.min(10)),
        )?;
        #[cfg(feature = "dred")]
        let dred = if config.dred {
            Some(DredState {
                decoder: ffi::RawDredDecoder::new()?,
                parsed: ffi::RawDred::new()?,
            })
        } else {
            None
        };
        Ok(Self {
            raw,
            config,
            #[cfg(feature = "dred")]
            dred,
        })
    }

    /// The settings in force.
    pub fn config(&self) -> DecoderConfig {
        self.config
    }

    /// Decodes `packet` into `out` (exactly [`FRAME_SAMPLES`] long). A packet libopus
    /// rejects returns an error and leaves `out` unspecified; conceal instead.
    pub fn decode(&mut self, packet: &[u8], out: &mut [f32]) -> Result<(), CodecError> {
        check_out(out)?;
        if packet.is_empty() {
            return Err(CodecError::Opus {
                code: sys::OPUS_INVALID_PACKET,
            });
        }
        let n = self.raw.decode_float(packet, out, false)?;
        pad_tail(out, n);
        Ok(())
    }

    /// Rebuilds the frame just before `next_packet` from its in-band FEC. Fails with an
    /// error when the packet carries none, so the caller can try DRED or conceal.
    pub fn decode_fec(&mut self, next_packet: &[u8], out: &mut [f32]) -> Result<(), CodecError> {
        check_out(out)?;
        if !ffi::packet_has_lbrr(next_packet) {
            return Err(CodecError::Opus {
                code: sys::OPUS_INVALID_PACKET,
            });
        }
        let n = self.raw.decode_float(next_packet, out, true)?;
        pad_tail(out, n);
        Ok(())
    }

    /// Rebuilds the frame `frames_before` frames before `later_packet` (1 = the frame just
    /// before it) from the packet's Deep REDundancy. Returns `Ok(false)` when the packet's
    /// redundancy does not reach that far back (or DRED is off); the caller then conceals.
    pub fn decode_dred(
        &mut self,
        later_packet: &[u8],
        frames_before: u32,
        out: &mut [f32],
    ) -> Result<bool, CodecError> {
        check_out(out)?;
        #[cfg(feature = "dred")]
        if let Some(state) = self.dred.as_mut() {
            let offset_samples = i64::from(frames_before) * FRAME_SAMPLES as i64;
            if frames_before == 0 || offset_samples > i64::from(SAMPLE_RATE_HZ) {
                return Ok(false);
            }
            let offset_samples = offset_samples as i32;
            // The redundancy starts up to ~100 ms before the packet's own audio
            // (`dred_offset`), so ask libopus to decode that much more history than the
            // frame we need, or `reach` falls short of it.
            let wanted = (offset_samples + 4_800).min(SAMPLE_RATE_HZ as i32);
            // Learn the reach from the entropy-coded part first: running the DRED decoder
            // network on a packet that does not reach back far enough is wasted CPU.
            let reach = state
                .decoder
                .parse(&mut state.parsed, later_packet, wanted, true)?;
            if reach < offset_samples {
                return Ok(false);
            }
            state
                .decoder
                .parse(&mut state.parsed, later_packet, wanted, false)?;
            let n = self
                .raw
                .decode_dred_float(&state.parsed, offset_samples, out)?;
            pad_tail(out, n);
            return Ok(true);
        }
        let _ = (later_packet, frames_before);
        Ok(false)
    }

    /// How many whole frames before `packet` its Deep REDundancy reaches (0 when it has
    /// none, or DRED is off). Reads only the entropy-coded part, so it is cheap enough to
    /// probe packets while loss lasts; a malformed packet answers 0.
    pub fn dred_reach_frames(&mut self, packet: &[u8]) -> u32 {
        #[cfg(feature = "dred")]
        if let Some(state) = self.dred.as_mut() {
            let reach = state
                .decoder
                .parse(&mut state.parsed, packet, SAMPLE_RATE_HZ as i32, true)
                .unwrap_or(0);
            return (reach.max(0) as u32) / FRAME_SAMPLES as u32;
        }
        let _ = packet;
        0
    }

    /// Conceals one lost frame into `out`.
    pub fn conceal(&mut self, out: &mut [f32]) -> Result<(), CodecError> {
        check_out(out)?;
        let n = self.raw.decode_float(&[], out, false)?;
        pad_tail(out, n);
        Ok(())
    }

    /// Forgets the decoder history (after a long gap such as a hold).
    pub fn reset(&mut self) -> Result<(), CodecError> {
        // OPUS_RESET_STATE takes no argument; passing one extra int is ignored by the
        // varargs reader but keeps one ctl wrapper.
        self.raw.set_int(sys::OPUS_RESET_STATE, 0)?;
        Ok(())
    }
}

fn check_out(out: &[f32]) -> Result<(), CodecError> {
    if out.len() == FRAME_SAMPLES {
        Ok(())
    } else {
        Err(CodecError::FrameLength { got: out.len() })
    }
}

fn pad_tail(out: &mut [f32], decoded: usize) {
    // A peer could send a 10 ms packet; the rest of our 20 ms slot is then silence.
    if let Some(tail) = out.get_mut(decoded..) {
        tail.fill(0.0);
    }
}

/// Whether an Opus packet carries in-band FEC for the previous frame.
pub fn packet_has_fec(packet: &[u8]) -> bool {
    ffi::packet_has_lbrr(packet)
}

/// Decodes a packet the way plain libopus would (no FEC, no DRED, complexity-0 PLC); the
/// benchmark baseline.
pub fn plain_decoder() -> Result<Decoder, CodecError> {
    Decoder::new(DecoderConfig {
        complexity: 0,
        dred: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(frame: usize) -> Vec<f32> {
        (0..FRAME_SAMPLES)
            .map(|i| {
                let t = (frame * FRAME_SAMPLES + i) as f32 / SAMPLE_RATE_HZ as f32;
                0.3 * (2.0 * std::f32::consts::PI * 440.0 * t).sin()
            })
            .collect()
    }

    #[test]
    fn encodes_and_decodes_a_tone() {
        let mut enc = Encoder::new(EncoderConfig::default()).expect("encoder");
        let mut dec = Decoder::new(DecoderConfig::default()).expect("decoder");
        let mut out = vec![0.0; FRAME_SAMPLES];
        let mut energy = 0.0;
        for f in 0..20 {
            let pkt = enc.encode(&tone(f)).expect("encode");
            assert!(
                !pkt.is_empty() && pkt.len() < 200,
                "28 kbit/s is 70 bytes per frame, got {}",
                pkt.len()
            );
            dec.decode(&pkt, &mut out).expect("decode");
            energy += out.iter().map(|s| s * s).sum::<f32>();
        }
        assert!(energy > 100.0, "decoded tone has energy {energy}");
    }

    #[test]
    fn fec_is_present_once_loss_is_expected() {
        let mut enc = Encoder::new(EncoderConfig {
            expected_loss_pct: 10,
            ..EncoderConfig::default()
        })
        .expect("encoder");
        let packets: Vec<_> = (0..20)
            .map(|f| enc.encode(&tone(f)).expect("encode"))
            .collect();
        assert!(packets[5..].iter().any(|p| ffi::packet_has_lbrr(p)));
        let mut dec = Decoder::new(DecoderConfig::default()).expect("decoder");
        let mut out = vec![0.0; FRAME_SAMPLES];
        dec.decode(&packets[0], &mut out).expect("decode");
        dec.decode_fec(&packets[19], &mut out).expect("fec");
    }

    #[cfg(feature = "dred")]
    #[test]
    fn dred_rebuilds_frames_from_most_speech_packets() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/speech_48k.wav");
        let mut reader = hound::WavReader::open(path).expect("speech sample");
        let speech: Vec<f32> = reader
            .samples::<i16>()
            .map(|s| f32::from(s.expect("sample")) / 32768.0)
            .collect();
        let mut enc = Encoder::new(EncoderConfig {
            fec: false,
            dred_duration_10ms: 100,
            expected_loss_pct: 20,
            ..EncoderConfig::default()
        })
        .expect("encoder");
        let mut dec = Decoder::new(DecoderConfig::default()).expect("decoder");
        let mut out = vec![0.0; FRAME_SAMPLES];
        let (mut usable, mut total) = (0, 0);
        for frame in speech.chunks_exact(FRAME_SAMPLES) {
            let packet = enc.encode(frame).expect("encode");
            total += 1;
            if dec.decode_dred(&packet, 3, &mut out).expect("dred") {
                usable += 1;
            }
            dec.decode(&packet, &mut out).expect("decode");
        }
        assert!(
            usable * 10 > total * 8,
            "DRED reached 3 frames back in {usable} of {total} packets"
        );
    }

    #[cfg(feature = "dred")]
    #[test]
    fn complexity_drops_while_dred_is_sent_and_comes_back_after() {
        let config = EncoderConfig {
            complexity: 10,
            dred_complexity: 6,
            ..EncoderConfig::default()
        };
        let mut enc = Encoder::new(config).expect("encoder");
        assert!(!enc.dred_active());
        assert_eq!(enc.complexity_in_force().expect("complexity"), 10);
        let mut frame = 0;
        while !enc.dred_active() {
            enc.set_expected_loss_pct(25).expect("loss");
            enc.encode(&tone(frame)).expect("encode");
            frame += 1;
            assert!(frame < 50, "DRED never switched on at 25% loss");
        }
        assert_eq!(enc.complexity_in_force().expect("complexity"), 6);
        while enc.dred_active() {
            enc.set_expected_loss_pct(0).expect("loss");
            enc.encode(&tone(frame)).expect("encode");
            frame += 1;
            assert!(frame < 100, "DRED never switched off at 0% loss");
        }
        assert_eq!(enc.complexity_in_force().expect("complexity"), 10);
    }

    #[test]
    fn complexity_stays_put_without_dred() {
        let mut enc = Encoder::new(EncoderConfig {
            complexity: 9,
            dred_complexity: 6,
            dred_duration_10ms: 0,
            expected_loss_pct: 30,
            ..EncoderConfig::default()
        })
        .expect("encoder");
        enc.set_expected_loss_pct(40).expect("loss");
        assert!(!enc.dred_active());
        assert_eq!(enc.complexity_in_force().expect("complexity"), 9);
    }

    #[test]
    fn wrong_frame_length_is_an_error() {
        let mut enc = Encoder::new(EncoderConfig::default()).expect("encoder");
        assert_eq!(
            enc.encode(&[0.0; 100]),
            Err(CodecError::FrameLength { got: 100 })
        );
        let mut dec = Decoder::new(DecoderConfig::default()).expect("decoder");
        assert!(dec.decode(&[0xff, 0xff, 0xff], &mut [0.0; 10]).is_err());
    }

    #[test]
    fn garbage_packets_do_not_panic() {
        let mut dec = Decoder::new(DecoderConfig::default()).expect("decoder");
        let mut out = vec![0.0; FRAME_SAMPLES];
        for len in 0..64u8 {
            let garbage: Vec<u8> = (0..len)
                .map(|i| i.wrapping_mul(37).wrapping_add(len))
                .collect();
            let _ = dec.decode(&garbage, &mut out);
            let _ = dec.decode_fec(&garbage, &mut out);
            let _ = dec.decode_dred(&garbage, 2, &mut out);
            assert_eq!(dec.dred_reach_frames(&garbage), 0, "{garbage:?}");
        }
        dec.conceal(&mut out).expect("conceal");
    }
}
