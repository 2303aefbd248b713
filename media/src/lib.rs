//! Opus audio pipeline: codec, jitter buffer, FEC/concealment, mixing, devices.
//!
//! The core is sans-IO (no sockets, no clock, no threads, no tokio): time enters as a
//! `now: Instant` argument and bytes leave through `poll_*` methods.
//!
//! | module | what it does |
//! | --- | --- |
//! | [`codec`] | Opus encoder/decoder (48 kHz mono, 20 ms), FEC, DRED, deep PLC/OSCE |
//! | [`packet`] | media packet wire format (sequence, timestamp, flags, payload) |
//! | [`secure`] | ChaCha20-Poly1305 per-direction encryption with a replay window |
//! | [`sender`] | send pacing: a frame every 20 ms, keep-alives on hold, mute |
//! | [`jitter`] | adaptive jitter buffer that owns the decoder and decides recovery |
//! | [`stats`] | loss, jitter, RTT, concealment, E-model MOS |
//! | [`mixer`] | conference mixing for up to 5 participants |
//! | [`pipeline`] | sender and receiver halves and an offline simulation helper |
//! | [`device`], [`dsp`] | sound cards, virtual devices, resampling, noise suppression |
//!
//! Not here: signalling, key agreement, sockets (the `calls` layer wires these).

pub mod codec;
pub mod device;
pub mod dsp;
pub mod jitter;
pub mod mixer;
pub mod packet;
pub mod pipeline;
pub mod secure;
pub mod sender;
pub mod stats;
