//! TURN over a byte stream (TCP or TLS, RFC 8656 §3.1 and §12.5): where one message ends.
//!
//! A stream has no datagram boundaries, so the receiver finds them from the headers: a STUN
//! message is its 20-byte header plus the header's length field (always a multiple of 4), a
//! ChannelData message is its 4-byte header plus its length field, padded to a multiple of
//! 4 bytes (mandatory on streams, unlike UDP). [`StreamDecoder`] cuts a stream into such
//! frames, whatever the read sizes; [`pad_for_stream`] adds the padding before sending.
//!
//! Memory is bounded by construction: the decoder holds at most one incomplete frame, and a
//! frame longer than the configured maximum is refused from its header alone. A framing
//! error cannot be resynchronised (the next boundary is unknown): the connection must close.
//!
//! Does not: parse the frames (see [`super::wire::decode_datagram`]) or touch sockets.

use super::wire::{CHANNEL_DATA_HEADER_BYTES, CHANNEL_MAX_RFC5766, CHANNEL_MIN};

/// Size of a STUN header.
const STUN_HEADER_BYTES: usize = 20;
/// Bytes needed to know a frame's length (both kinds keep it in bytes 2..4).
const LENGTH_KNOWN_BYTES: usize = 4;
/// The largest frame a 16-bit length field can describe (a STUN message).
pub const LARGEST_FRAME_BYTES: usize = STUN_HEADER_BYTES + u16::MAX as usize;

/// Why a stream cannot be framed any further.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The first two bits say neither STUN (00) nor ChannelData (01).
    #[error("stream byte {0:#04x} starts neither STUN nor ChannelData")]
    UnknownKind(u8),
    /// A STUN length that is not a multiple of 4 (RFC 8489 §5).
    #[error("STUN length {0} is not a multiple of 4")]
    BadStunLength(usize),
    /// A ChannelData number outside 0x4000..=0x7FFF.
    #[error("channel number {0:#06x} outside 0x4000..=0x7FFF")]
    BadChannel(u16),
    /// A frame longer than this decoder accepts.
    #[error("frame of {declared} bytes exceeds the limit of {max}")]
    Oversize {
        /// Length the header announces, padding included.
        declared: usize,
        /// The decoder's limit.
        max: usize,
    },
}

/// Cuts a TURN byte stream into messages. Feed every byte read to [`StreamDecoder::decode`].
#[derive(Debug, Clone)]
pub struct StreamDecoder {
    partial: Vec<u8>,
    max_frame_bytes: usize,
    failed: Option<StreamError>,
}

impl StreamDecoder {
    /// A decoder refusing frames (padding included) longer than `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> Self {
        Self {
            partial: Vec::new(),
            max_frame_bytes: max_frame_bytes.clamp(LENGTH_KNOWN_BYTES, LARGEST_FRAME_BYTES),
            failed: None,
        }
    }

    /// Bytes of an incomplete frame waiting for the rest.
    pub fn buffered_bytes(&self) -> usize {
        self.partial.len()
    }

    /// Consumes `bytes` and calls `frame` with each complete message, without its padding.
    ///
    /// After an error every later call returns it again: close the connection.
    pub fn decode(
        &mut self,
        mut bytes: &[u8],
        mut frame: impl FnMut(&[u8]),
    ) -> Result<(), StreamError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        while !bytes.is_empty() {
            if self.partial.is_empty() {
                match self.measure(bytes)? {
                    Some((unpadded, total)) if bytes.len() >= total => {
                        frame(&bytes[..unpadded]);
                        bytes = &bytes[total..];
                    }
                    _ => {
                        // Shorter than a header, or than the frame: at most one frame's worth.
                        self.partial.extend_from_slice(bytes);
                        return Ok(());
                    }
                }
                continue;
            }
            let known = frame_length(&self.partial, self.max_frame_bytes);
            let wanted = match self.fail_on(known)? {
                Some((_, total)) => total,
                None => LENGTH_KNOWN_BYTES,
            };
            let take = wanted.saturating_sub(self.partial.len()).min(bytes.len());
            self.partial.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            let known = frame_length(&self.partial, self.max_frame_bytes);
            if let Some((unpadded, total)) = self.fail_on(known)?
                && self.partial.len() >= total
            {
                frame(&self.partial[..unpadded]);
                self.partial.clear();
            }
        }
        Ok(())
    }

    /// `(length without padding, length with padding)` of the frame `bytes` starts with;
    /// `None` while fewer than 4 bytes are known.
    fn measure(&mut self, bytes: &[u8]) -> Result<Option<(usize, usize)>, StreamError> {
        let known = frame_length(bytes, self.max_frame_bytes);
        self.fail_on(known)
    }

    fn fail_on<T>(&mut self, result: Result<T, StreamError>) -> Result<T, StreamError> {
        if let Err(error) = &result {
            self.failed = Some(*error);
            self.partial.clear();
        }
        result
    }
}

/// `(unpadded, padded)` length of the frame starting at `bytes`, `None` when fewer than 4
/// bytes are given (a first byte of neither kind is refused at once).
fn frame_length(bytes: &[u8], max: usize) -> Result<Option<(usize, usize)>, StreamError> {
    let Some(header) = bytes.get(..LENGTH_KNOWN_BYTES) else {
        return match bytes.first() {
            Some(&first) if first >> 6 > 0b01 => Err(StreamError::UnknownKind(first)),
            _ => Ok(None),
        };
    };
    let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let (unpadded, total) = match header[0] >> 6 {
        0b00 => {
            if length % 4 != 0 {
                return Err(StreamError::BadStunLength(length));
            }
            (STUN_HEADER_BYTES + length, STUN_HEADER_BYTES + length)
        }
        0b01 => {
            let channel = u16::from_be_bytes([header[0], header[1]]);
            if !(CHANNEL_MIN..=CHANNEL_MAX_RFC5766).contains(&channel) {
                return Err(StreamError::BadChannel(channel));
            }
            let unpadded = CHANNEL_DATA_HEADER_BYTES + length;
            (unpadded, unpadded.next_multiple_of(4))
        }
        _ => return Err(StreamError::UnknownKind(header[0])),
    };
    if total > max {
        return Err(StreamError::Oversize {
            declared: total,
            max,
        });
    }
    Ok(Some((unpadded, total)))
}

/// Whether a new connection is TURN, for a port shared with other protocols (TLS, whose
/// records start 0x16 0x03, frames like STUN by its first bits alone): a TURN client's
/// first message is always a STUN request (ChannelData needs a ChannelBind first), so the
/// first byte has its top bits 00 and bytes 4..8 hold the magic cookie. `None` while
/// fewer than 8 bytes are known.
pub fn starts_like_turn(prefix: &[u8]) -> Option<bool> {
    let first = *prefix.first()?;
    if first >> 6 != 0b00 {
        return Some(false);
    }
    let cookie = prefix.get(4..8)?;
    Some(cookie == super::wire::MAGIC_COOKIE.to_be_bytes())
}

/// Pads a message to a multiple of 4 bytes with zeros, as streams require of ChannelData
/// (STUN messages already are).
pub fn pad_for_stream(message: &mut Vec<u8>) {
    let padded = message.len().next_multiple_of(4);
    message.resize(padded, 0);
}

/// Cuts `bytes` into frames with a fresh decoder: the fuzzed and property-tested entry point.
/// Returns the frames and the framing error that stopped it, if any.
pub fn split_stream(bytes: &[u8], max_frame_bytes: usize) -> (Vec<Vec<u8>>, Option<StreamError>) {
    let mut decoder = StreamDecoder::new(max_frame_bytes);
    let mut frames = Vec::new();
    let error = decoder
        .decode(bytes, |frame| frames.push(frame.to_vec()))
        .err();
    (frames, error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::turn::wire::{self, TurnDatagram};
    use proptest::prelude::*;
    use stun_codec::TransactionId;

    fn channel_data(channel: u16, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        assert!(wire::encode_channel_data(channel, data, &mut out));
        pad_for_stream(&mut out);
        out
    }

    fn send_indication(data: &[u8]) -> Vec<u8> {
        let peer = "203.0.113.9:4000".parse().expect("addr");
        let m = wire::send_indication(TransactionId::new([3; 12]), peer, data).expect("fits");
        wire::encode_stun(m, None).expect("encodes")
    }

    fn collect(decoder: &mut StreamDecoder, bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        decoder
            .decode(bytes, |f| frames.push(f.to_vec()))
            .expect("frames");
        frames
    }

    #[test]
    fn channel_data_is_padded_to_four_bytes_and_the_padding_is_not_delivered() {
        let bytes = channel_data(0x4001, b"hello");
        assert_eq!(bytes.len(), 12, "4 header + 5 data + 3 padding");
        assert_eq!(&bytes[9..], &[0, 0, 0]);
        let mut decoder = StreamDecoder::new(1500);
        let frames = collect(&mut decoder, &bytes);
        assert_eq!(frames, vec![bytes[..9].to_vec()]);
        assert!(matches!(
            wire::decode_datagram(&frames[0]),
            Ok(TurnDatagram::ChannelData {
                channel: 0x4001,
                data: b"hello"
            })
        ));
        assert_eq!(decoder.buffered_bytes(), 0);
    }

    #[test]
    fn frames_split_at_every_byte_come_out_whole() {
        let mut stream = channel_data(0x4000, b"abc");
        let stun = send_indication(b"media bytes");
        stream.extend_from_slice(&stun);
        stream.extend(channel_data(0x4FFF, &[7; 100]));
        let expected = split_stream(&stream, 1500).0;
        assert_eq!(expected.len(), 3);
        assert_eq!(expected[1], stun);
        for cut in 0..stream.len() {
            let mut decoder = StreamDecoder::new(1500);
            let mut frames = collect(&mut decoder, &stream[..cut]);
            frames.extend(collect(&mut decoder, &stream[cut..]));
            assert_eq!(frames, expected, "cut at {cut}");
        }
        // One byte at a time.
        let mut decoder = StreamDecoder::new(1500);
        let mut frames = Vec::new();
        for byte in &stream {
            frames.extend(collect(&mut decoder, std::slice::from_ref(byte)));
        }
        assert_eq!(frames, expected);
    }

    #[test]
    fn an_oversize_frame_is_refused_from_its_header_and_the_decoder_stays_failed() {
        let big = channel_data(0x4002, &[1; 2000]);
        let mut decoder = StreamDecoder::new(1500);
        let error = decoder
            .decode(&big[..4], |_| panic!("no frame"))
            .expect_err("oversize");
        assert_eq!(
            error,
            StreamError::Oversize {
                declared: 2004,
                max: 1500
            }
        );
        assert_eq!(
            decoder.buffered_bytes(),
            0,
            "nothing kept of a refused frame"
        );
        let small = channel_data(0x4002, b"ok");
        assert_eq!(decoder.decode(&small, |_| panic!("no frame")), Err(error));
    }

    #[test]
    fn bytes_that_start_no_turn_message_are_refused() {
        assert_eq!(
            split_stream(&[0xC0], 1500).1,
            Some(StreamError::UnknownKind(0xC0))
        );
        assert_eq!(
            split_stream(&[0x80, 0, 0, 4], 1500).1,
            Some(StreamError::UnknownKind(0x80))
        );
        assert_eq!(
            split_stream(&[0x00, 0x01, 0, 6], 1500).1,
            Some(StreamError::BadStunLength(6))
        );
        assert_eq!(
            split_stream(&[0x7F, 0xFF, 0, 0], 1500).0,
            vec![vec![0x7F, 0xFF, 0, 0]]
        );
    }

    #[test]
    fn turn_is_told_from_tls_by_its_first_eight_bytes() {
        let stun = send_indication(b"x");
        assert_eq!(starts_like_turn(&stun[..8]), Some(true));
        assert_eq!(starts_like_turn(&stun[..7]), None);
        // ChannelData never opens a connection; ASCII protocols start with the same bits.
        assert_eq!(starts_like_turn(&channel_data(0x4001, b"x")), Some(false));
        // A TLS 1.3 ClientHello record header and handshake header.
        let tls = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC];
        assert_eq!(starts_like_turn(&tls), Some(false));
        assert_eq!(starts_like_turn(b"GET / HT"), Some(false));
        assert_eq!(starts_like_turn(&[]), None);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic_and_stay_bounded(
            bytes in proptest::collection::vec(any::<u8>(), 0..4096),
            cut in 0usize..4096,
        ) {
            let mut decoder = StreamDecoder::new(600);
            let cut = cut.min(bytes.len());
            let mut total = 0usize;
            let first = decoder.decode(&bytes[..cut], |f| total += f.len());
            if first.is_ok() {
                let _ = decoder.decode(&bytes[cut..], |f| total += f.len());
            }
            prop_assert!(decoder.buffered_bytes() < 600);
            prop_assert!(total <= bytes.len());
        }

        #[test]
        fn corrupted_streams_of_valid_frames_never_panic(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..8),
            flip in any::<(usize, u8)>(),
        ) {
            let mut stream = Vec::new();
            for (i, p) in payloads.iter().enumerate() {
                if i % 2 == 0 {
                    stream.extend(channel_data(0x4000 + i as u16, p));
                } else {
                    stream.extend(send_indication(p));
                }
            }
            let (frames, error) = split_stream(&stream, 1500);
            prop_assert_eq!(frames.len(), payloads.len());
            prop_assert!(error.is_none());
            let at = flip.0 % stream.len();
            stream[at] ^= flip.1;
            let (frames, _) = split_stream(&stream, 1500);
            for frame in frames {
                let _ = wire::decode_datagram(&frame);
            }
        }
    }
}
