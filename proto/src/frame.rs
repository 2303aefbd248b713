//! Length-prefixed frames on QUIC and TCP streams.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of a postcard-encoded
//! message. The length is checked against a limit *before* any buffering, so a peer that
//! announces a huge frame is refused at once and a peer that stalls mid-frame holds at most
//! `max_len` bytes of our memory.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The largest frame anyone sends by default. Chat text, credentials and directories fit
/// easily; anything larger is a bug or an attack.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024;

/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

/// A frame could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("message does not decode: {0}")]
    Decode(String),
    #[error("message does not encode: {0}")]
    Encode(String),
    #[error("trailing bytes after the message")]
    TrailingBytes,
}

/// Encodes `message` as one frame: length prefix and body.
pub fn encode<T: Serialize>(message: &T, max_len: usize) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![0u8; HEADER_LEN];
    out = postcard::to_extend(message, out).map_err(|e| FrameError::Encode(e.to_string()))?;
    let len = out.len() - HEADER_LEN;
    if len > max_len {
        return Err(FrameError::TooLarge { len, max: max_len });
    }
    let prefix = u32::try_from(len).map_err(|_| FrameError::TooLarge { len, max: max_len })?;
    out[..HEADER_LEN].copy_from_slice(&prefix.to_be_bytes());
    Ok(out)
}

/// Decodes one frame body (without its length prefix) into a message. Every byte must be
/// consumed: trailing garbage is an error, not ignored.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    let (message, rest) =
        postcard::take_from_bytes(body).map_err(|e| FrameError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::TrailingBytes);
    }
    Ok(message)
}

/// Reads the body length from a frame header, enforcing `max_len`.
pub fn body_len(header: [u8; HEADER_LEN], max_len: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > max_len {
        return Err(FrameError::TooLarge { len, max: max_len });
    }
    Ok(len)
}

/// Sans-IO reassembly of frames from a byte stream.
///
/// Feed whatever the stream yields with [`FrameDecoder::push`], then drain
/// [`FrameDecoder::next_frame`] until it returns `Ok(None)`. It holds at most one frame
/// (header and `max_len` body) plus one pushed chunk: `push` refuses more, so a caller
/// that forgets to drain cannot grow it without bound.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Bytes before this offset were already returned; compacted lazily so a stream of
    /// tiny frames costs linear, not quadratic, time.
    start: usize,
    max_len: usize,
}

impl FrameDecoder {
    pub fn new(max_len: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            max_len,
        }
    }

    /// Appends bytes read from the stream. Refuses them (`TooLarge`) when the bytes not yet
    /// returned as frames would exceed one maximal frame plus this chunk.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
        let pending = self.buffered();
        let limit = HEADER_LEN + self.max_len + bytes.len().max(HEADER_LEN + self.max_len);
        if pending + bytes.len() > limit {
            return Err(FrameError::TooLarge {
                len: pending + bytes.len(),
                max: limit,
            });
        }
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// The next complete frame body, if one has arrived. An oversized length prefix is
    /// reported as soon as the header is complete, before the body is buffered.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let pending = &self.buf[self.start..];
        let Some(header) = pending.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let len = body_len(*header, self.max_len)?;
        if pending.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let body = pending[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.start += HEADER_LEN + len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        Ok(Some(body))
    }

    /// Bytes buffered but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_round_trip_across_arbitrary_splits() {
        let messages: Vec<(u32, String)> =
            (0..20).map(|i| (i, "x".repeat(i as usize * 7))).collect();
        let mut stream = Vec::new();
        for m in &messages {
            stream.extend(encode(m, DEFAULT_MAX_FRAME).expect("encode"));
        }
        for chunk in [1, 2, 3, 5, 64, stream.len()] {
            let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
            let mut out = Vec::new();
            for piece in stream.chunks(chunk) {
                decoder.push(piece).expect("drained after every push");
                while let Some(body) = decoder.next_frame().expect("valid") {
                    out.push(decode_body::<(u32, String)>(&body).expect("decode"));
                }
            }
            assert_eq!(out, messages, "chunk size {chunk}");
            assert_eq!(decoder.buffered(), 0);
        }
    }

    #[test]
    fn an_oversized_length_is_refused_before_buffering_the_body() {
        let mut decoder = FrameDecoder::new(1024);
        decoder.push(&u32::MAX.to_be_bytes()).expect("small");
        assert_eq!(
            decoder.next_frame(),
            Err(FrameError::TooLarge {
                len: u32::MAX as usize,
                max: 1024
            })
        );
        let big = "y".repeat(2000);
        assert!(matches!(
            encode(&big, 1024),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn an_undrained_decoder_refuses_to_grow_without_bound() {
        let mut decoder = FrameDecoder::new(16);
        // A frame header announcing 16 bytes, then a trickle of small pushes never drained.
        decoder.push(&16u32.to_be_bytes()).expect("header");
        let mut refused = false;
        for _ in 0..100 {
            if decoder.push(&[0u8; 8]).is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused);
        assert!(decoder.buffered() <= 2 * (HEADER_LEN + 16) + 8);
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut body = postcard::to_allocvec(&5u32).expect("encode");
        body.push(0);
        assert_eq!(decode_body::<u32>(&body), Err(FrameError::TrailingBytes));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut decoder = FrameDecoder::new(256);
            let _ = decoder.push(&bytes);
            while let Ok(Some(body)) = decoder.next_frame() {
                let _ = decode_body::<(u64, String, Vec<u8>)>(&body);
            }
        }
    }
}
