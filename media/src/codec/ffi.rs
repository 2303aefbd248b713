//! Thin owning wrappers around libopus handles (via `opusic-sys`).
//!
//! This is the only module of the crate that uses `unsafe`. Every wrapper owns exactly one
//! libopus object, is `Send` (libopus states hold no thread-bound data) and never `Sync`,
//! and frees its object in `Drop`. Slices passed to libopus are bounds-checked here, so the
//! safe functions cannot make libopus read or write outside a Rust buffer.
#![allow(unsafe_code)]

use core::ffi::c_int;
use core::ptr::NonNull;

use opusic_sys as sys;

/// A libopus error code (negative `OPUS_*` constant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpusCode(pub(crate) c_int);

fn check(ret: c_int) -> Result<c_int, OpusCode> {
    if ret < 0 { Err(OpusCode(ret)) } else { Ok(ret) }
}

fn len_i32(len: usize) -> i32 {
    // Opus packets and frames are far below i32::MAX; saturating keeps libopus from seeing a
    // negative length if a caller ever hands a huge buffer.
    i32::try_from(len).unwrap_or(i32::MAX)
}

/// An `OpusEncoder*` that this struct owns.
pub(crate) struct RawEncoder(NonNull<sys::OpusEncoder>);

// SAFETY: an OpusEncoder is plain heap memory with no thread affinity; moving the owning
// handle to another thread is sound as long as only one thread uses it at a time, which
// `&mut self` on every method guarantees.
unsafe impl Send for RawEncoder {}

impl RawEncoder {
    pub(crate) fn new(
        sample_rate_hz: i32,
        channels: i32,
        application: c_int,
    ) -> Result<Self, OpusCode> {
        let mut err: c_int = 0;
        // SAFETY: `err` is a valid out pointer; libopus returns null on failure.
        let ptr =
            unsafe { sys::opus_encoder_create(sample_rate_hz, channels, application, &mut err) };
        check(err)?;
        NonNull::new(ptr)
            .map(Self)
            .ok_or(OpusCode(sys::OPUS_ALLOC_FAIL))
    }

    /// Sets an integer-valued encoder option (`OPUS_SET_*` request taking an `opus_int32`).
    pub(crate) fn set_int(&mut self, request: c_int, value: i32) -> Result<(), OpusCode> {
        // SAFETY: every OPUS_SET_* request used by this crate takes exactly one opus_int32
        // vararg; the handle is valid for the life of `self`.
        check(unsafe { sys::opus_encoder_ctl(self.0.as_ptr(), request, value) }).map(|_| ())
    }

    /// Reads an integer-valued encoder option (`OPUS_GET_*` request taking `opus_int32*`).
    pub(crate) fn get_int(&mut self, request: c_int) -> Result<i32, OpusCode> {
        let mut value: i32 = 0;
        // SAFETY: OPUS_GET_* requests used here take one `opus_int32*`, which points to a
        // live local.
        check(unsafe { sys::opus_encoder_ctl(self.0.as_ptr(), request, &mut value as *mut i32) })?;
        Ok(value)
    }

    /// Encodes one frame of mono float PCM into `out`; returns the packet length.
    pub(crate) fn encode_float(&mut self, pcm: &[f32], out: &mut [u8]) -> Result<usize, OpusCode> {
        let frame = c_int::try_from(pcm.len()).map_err(|_| OpusCode(sys::OPUS_BAD_ARG))?;
        // SAFETY: libopus reads `frame` samples (mono) from `pcm` and writes at most
        // `out.len()` bytes into `out`; both lengths come from the slices themselves.
        let ret = unsafe {
            sys::opus_encode_float(
                self.0.as_ptr(),
                pcm.as_ptr(),
                frame,
                out.as_mut_ptr(),
                len_i32(out.len()),
            )
        };
        check(ret).map(|n| n as usize)
    }
}

impl Drop for RawEncoder {
    fn drop(&mut self) {
        // SAFETY: the pointer came from opus_encoder_create and is freed exactly once.
        unsafe { sys::opus_encoder_destroy(self.0.as_ptr()) }
    }
}

/// An `OpusDecoder*` that this struct owns.
pub(crate) struct RawDecoder(NonNull<sys::OpusDecoder>);

// SAFETY: as for `RawEncoder`.
unsafe impl Send for RawDecoder {}

impl RawDecoder {
    pub(crate) fn new(sample_rate_hz: i32, channels: i32) -> Result<Self, OpusCode> {
        let mut err: c_int = 0;
        // SAFETY: `err` is a valid out pointer; libopus returns null on failure.
        let ptr = unsafe { sys::opus_decoder_create(sample_rate_hz, channels, &mut err) };
        check(err)?;
        NonNull::new(ptr)
            .map(Self)
            .ok_or(OpusCode(sys::OPUS_ALLOC_FAIL))
    }

    pub(crate) fn set_int(&mut self, request: c_int, value: i32) -> Result<(), OpusCode> {
        // SAFETY: the OPUS_SET_* decoder requests used here take one opus_int32 vararg.
        check(unsafe { sys::opus_decoder_ctl(self.0.as_ptr(), request, value) }).map(|_| ())
    }

    /// Decodes `packet` (or conceals when `packet` is empty) into `out`, whose length is the
    /// number of samples wanted. With `fec`, decodes the in-band redundancy of the frame
    /// before `packet`.
    pub(crate) fn decode_float(
        &mut self,
        packet: &[u8],
        out: &mut [f32],
        fec: bool,
    ) -> Result<usize, OpusCode> {
        let frame = c_int::try_from(out.len()).map_err(|_| OpusCode(sys::OPUS_BAD_ARG))?;
        let data = if packet.is_empty() {
            core::ptr::null()
        } else {
            packet.as_ptr()
        };
        // SAFETY: libopus reads `packet.len()` bytes from `data` (or nothing when null) and
        // writes at most `frame` mono samples into `out`.
        let ret = unsafe {
            sys::opus_decode_float(
                self.0.as_ptr(),
                data,
                len_i32(packet.len()),
                out.as_mut_ptr(),
                frame,
                c_int::from(fec),
            )
        };
        check(ret).map(|n| n as usize)
    }

    /// Decodes `out.len()` samples of deep redundancy `offset_samples` before the start of
    /// the packet that `dred` was parsed from.
    #[cfg(feature = "dred")]
    pub(crate) fn decode_dred_float(
        &mut self,
        dred: &RawDred,
        offset_samples: i32,
        out: &mut [f32],
    ) -> Result<usize, OpusCode> {
        let frame = c_int::try_from(out.len()).map_err(|_| OpusCode(sys::OPUS_BAD_ARG))?;
        // SAFETY: both handles are valid; libopus writes at most `frame` mono samples.
        let ret = unsafe {
            sys::opus_decoder_dred_decode_float(
                self.0.as_ptr(),
                dred.0.as_ptr(),
                offset_samples,
                out.as_mut_ptr(),
                frame,
            )
        };
        check(ret).map(|n| n as usize)
    }
}

impl Drop for RawDecoder {
    fn drop(&mut self) {
        // SAFETY: the pointer came from opus_decoder_create and is freed exactly once.
        unsafe { sys::opus_decoder_destroy(self.0.as_ptr()) }
    }
}

/// Whether `packet` carries in-band FEC (LBRR) data for the previous frame.
pub(crate) fn packet_has_lbrr(packet: &[u8]) -> bool {
    if packet.is_empty() {
        return false;
    }
    // SAFETY: libopus reads at most `packet.len()` bytes and validates the TOC itself.
    unsafe { sys::opus_packet_has_lbrr(packet.as_ptr(), len_i32(packet.len())) > 0 }
}

/// An `OpusDREDDecoder*` (the neural redundancy decoder) that this struct owns.
#[cfg(feature = "dred")]
pub(crate) struct RawDredDecoder(NonNull<sys::OpusDREDDecoder>);

#[cfg(feature = "dred")]
// SAFETY: as for `RawEncoder`.
unsafe impl Send for RawDredDecoder {}

#[cfg(feature = "dred")]
impl RawDredDecoder {
    pub(crate) fn new() -> Result<Self, OpusCode> {
        let mut err: c_int = 0;
        // SAFETY: `err` is a valid out pointer; libopus returns null on failure.
        let ptr = unsafe { sys::opus_dred_decoder_create(&mut err) };
        check(err)?;
        NonNull::new(ptr)
            .map(Self)
            .ok_or(OpusCode(sys::OPUS_ALLOC_FAIL))
    }

    /// Parses the deep redundancy of `packet` into `dred`, keeping at most
    /// `max_samples` (48 kHz) of history. Returns how many samples before the packet the
    /// redundancy reaches (0 when the packet has none). With `defer_processing` only the
    /// entropy-coded latents are read (cheap: enough to learn the reach), and `dred`
    /// cannot be decoded from.
    pub(crate) fn parse(
        &mut self,
        dred: &mut RawDred,
        packet: &[u8],
        max_samples: i32,
        defer_processing: bool,
    ) -> Result<i32, OpusCode> {
        if packet.is_empty() {
            return Ok(0);
        }
        let mut dred_end: c_int = 0;
        // SAFETY: libopus reads at most `packet.len()` bytes from `packet` and writes into
        // the owned DRED state and the local `dred_end`.
        let ret = unsafe {
            sys::opus_dred_parse(
                self.0.as_ptr(),
                dred.0.as_ptr(),
                packet.as_ptr(),
                len_i32(packet.len()),
                max_samples,
                48_000,
                &mut dred_end,
                c_int::from(defer_processing),
            )
        };
        check(ret)
    }
}

#[cfg(feature = "dred")]
impl Drop for RawDredDecoder {
    fn drop(&mut self) {
        // SAFETY: the pointer came from opus_dred_decoder_create and is freed exactly once.
        unsafe { sys::opus_dred_decoder_destroy(self.0.as_ptr()) }
    }
}

/// An `OpusDRED*` (parsed redundancy of one packet) that this struct owns.
#[cfg(feature = "dred")]
pub(crate) struct RawDred(NonNull<sys::OpusDRED>);

#[cfg(feature = "dred")]
// SAFETY: as for `RawEncoder`.
unsafe impl Send for RawDred {}

#[cfg(feature = "dred")]
impl RawDred {
    pub(crate) fn new() -> Result<Self, OpusCode> {
        let mut err: c_int = 0;
        // SAFETY: `err` is a valid out pointer; libopus returns null on failure.
        let ptr = unsafe { sys::opus_dred_alloc(&mut err) };
        check(err)?;
        NonNull::new(ptr)
            .map(Self)
            .ok_or(OpusCode(sys::OPUS_ALLOC_FAIL))
    }
}

#[cfg(feature = "dred")]
impl Drop for RawDred {
    fn drop(&mut self) {
        // SAFETY: the pointer came from opus_dred_alloc and is freed exactly once.
        unsafe { sys::opus_dred_free(self.0.as_ptr()) }
    }
}
