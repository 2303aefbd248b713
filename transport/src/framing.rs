//! Framed messages on streams ([`proto::frame`]: 4-byte length + postcard body) and a
//! request/response helper.
//!
//! Reading never buffers more than the frame limit: the length is checked before the body
//! is read, and the body's buffer grows with the bytes that actually arrive (starting at
//! 4 KiB), so a peer announcing a large frame it never sends pins little memory. Waiting for the *start* of a frame is not timed (an idle stream is legitimate and
//! the connection's idle timeout covers dead peers); once a frame has started, the rest must
//! arrive within [`FrameLimits::mid_frame_timeout`], so a peer that stalls mid-frame cannot
//! pin a buffer forever.

use crate::conn::{Conn, ConnError, RecvStream};
use proto::frame::{self, FrameError, HEADER_LEN};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// How long the rest of a frame may take once its first byte has arrived.
pub const DEFAULT_MID_FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`request`] waits for its response.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Bounds on reading one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// The largest body accepted, in bytes.
    pub max_len: usize,
    /// How long the rest of a frame may take once its first byte has arrived.
    pub mid_frame_timeout: Duration,
    /// How long [`request`] may take from opening its stream to having read the response;
    /// a peer that accepts a request and never answers fails it with
    /// [`RequestError::TimedOut`]. Not applied to [`Responses::next`], whose streams may
    /// legitimately stay quiet.
    pub response_timeout: Duration,
}

impl FrameLimits {
    pub const fn new(max_len: usize) -> Self {
        Self {
            max_len,
            mid_frame_timeout: DEFAULT_MID_FRAME_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
        }
    }
}

impl Default for FrameLimits {
    fn default() -> Self {
        Self::new(frame::DEFAULT_MAX_FRAME)
    }
}

/// A frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameIoError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("message does not decode: {0}")]
    Decode(String),
    #[error("message does not encode: {0}")]
    Encode(String),
    #[error("stream ended in the middle of a frame")]
    Truncated,
    #[error("peer stalled in the middle of a frame for more than {0:?}")]
    Stalled(Duration),
    #[error("stream error: {0}")]
    Io(#[from] io::Error),
}

impl FrameIoError {
    /// Whether the peer broke the framing rules (as opposed to the network failing).
    pub fn is_peer_misbehaving(&self) -> bool {
        matches!(
            self,
            Self::TooLarge { .. } | Self::Decode(_) | Self::Truncated | Self::Stalled(_)
        )
    }
}

impl From<FrameError> for FrameIoError {
    fn from(error: FrameError) -> Self {
        match error {
            FrameError::TooLarge { len, max } => Self::TooLarge { len, max },
            FrameError::Decode(reason) => Self::Decode(reason),
            FrameError::Encode(reason) => Self::Encode(reason),
            FrameError::TrailingBytes => Self::Decode("trailing bytes after the message".into()),
        }
    }
}

/// Writes `message` as one frame of at most [`proto::frame::DEFAULT_MAX_FRAME`] bytes.
pub async fn write_frame<W, T>(writer: &mut W, message: &T) -> Result<(), FrameIoError>
where
    W: AsyncWrite + Unpin + ?Sized,
    T: Serialize,
{
    write_frame_limited(writer, message, frame::DEFAULT_MAX_FRAME).await
}

/// Writes `message` as one frame of at most `max_len` bytes.
pub async fn write_frame_limited<W, T>(
    writer: &mut W,
    message: &T,
    max_len: usize,
) -> Result<(), FrameIoError>
where
    W: AsyncWrite + Unpin + ?Sized,
    T: Serialize,
{
    let bytes = frame::encode(message, max_len)?;
    writer.write_all(&bytes).await?;
    writer.flush().await?;
    Ok(())
}

/// Reads one frame of at most `max_len` bytes, with the default mid-frame timeout.
/// `Ok(None)` on a clean end of stream between frames.
pub async fn read_frame<R, T>(reader: &mut R, max_len: usize) -> Result<Option<T>, FrameIoError>
where
    R: AsyncRead + Unpin + ?Sized,
    T: DeserializeOwned,
{
    read_frame_with(reader, FrameLimits::new(max_len)).await
}

/// Reads one frame within `limits`. `Ok(None)` on a clean end of stream between frames.
pub async fn read_frame_with<R, T>(
    reader: &mut R,
    limits: FrameLimits,
) -> Result<Option<T>, FrameIoError>
where
    R: AsyncRead + Unpin + ?Sized,
    T: DeserializeOwned,
{
    let mut header = [0u8; HEADER_LEN];
    let first = reader.read(&mut header).await?;
    if first == 0 {
        return Ok(None);
    }
    let rest = async {
        read_exact_or_truncated(reader, &mut header[first..]).await?;
        let len = frame::body_len(header, limits.max_len)?;
        read_body(reader, len).await
    };
    let body = tokio::time::timeout(limits.mid_frame_timeout, rest)
        .await
        .map_err(|_| FrameIoError::Stalled(limits.mid_frame_timeout))??;
    Ok(Some(frame::decode_body(&body)?))
}

/// Bytes reserved for a body before any of it has arrived. The announced length only
/// bounds the body: a peer that announces a large frame and sends nothing more makes us
/// hold this much, not the announced length.
const INITIAL_BODY_CAPACITY_BYTES: usize = 4 * 1024;

/// Reads exactly `len` body bytes into a buffer that grows with the bytes received.
async fn read_body<R>(reader: &mut R, len: usize) -> Result<Vec<u8>, FrameIoError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut body = Vec::with_capacity(len.min(INITIAL_BODY_CAPACITY_BYTES));
    let announced = u64::try_from(len).unwrap_or(u64::MAX);
    let received = reader.take(announced).read_to_end(&mut body).await?;
    if received < len {
        return Err(FrameIoError::Truncated);
    }
    Ok(body)
}

async fn read_exact_or_truncated<R>(reader: &mut R, buf: &mut [u8]) -> Result<(), FrameIoError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    match reader.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(FrameIoError::Truncated),
        Err(e) => Err(FrameIoError::Io(e)),
    }
}

/// A request/response exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Conn(#[from] ConnError),
    #[error(transparent)]
    Frame(#[from] FrameIoError),
    #[error("peer ended the stream without a response")]
    NoResponse,
    #[error("no response within {0:?}")]
    TimedOut(Duration),
}

/// Sends `request` on a new stream, finishes the sending side, and reads exactly one
/// response of at most `limits.max_len` bytes, all within `limits.response_timeout`
/// (waiting for stream credit included).
pub async fn request<Req, Resp>(
    conn: &Conn,
    request: &Req,
    limits: FrameLimits,
) -> Result<Resp, RequestError>
where
    Req: Serialize,
    Resp: DeserializeOwned,
{
    let exchange = async {
        let mut responses = request_stream(conn, request, limits).await?;
        responses.next().await?.ok_or(RequestError::NoResponse)
    };
    tokio::time::timeout(limits.response_timeout, exchange)
        .await
        .unwrap_or(Err(RequestError::TimedOut(limits.response_timeout)))
}

/// Sends `request` on a new stream and finishes the sending side; the responses are read
/// from the returned [`Responses`] until the peer ends the stream.
pub async fn request_stream<Req>(
    conn: &Conn,
    request: &Req,
    limits: FrameLimits,
) -> Result<Responses, RequestError>
where
    Req: Serialize,
{
    let (mut send, recv) = conn.open_bi().await?;
    write_frame_limited(&mut send, request, limits.max_len).await?;
    send.shutdown().await.map_err(FrameIoError::Io)?;
    Ok(Responses { recv, limits })
}

/// The responses to one request, read frame by frame.
pub struct Responses {
    recv: RecvStream,
    limits: FrameLimits,
}

impl std::fmt::Debug for Responses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responses")
            .field("limits", &self.limits)
            .finish()
    }
}

impl Responses {
    /// The next response; `Ok(None)` once the peer has ended the stream.
    pub async fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameIoError> {
        read_frame_with(&mut self.recv, self.limits).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_a_clean_end_is_none() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let messages = vec![
            (1u32, "one".to_owned()),
            (2, String::new()),
            (3, "x".repeat(900)),
        ];
        let sent = messages.clone();
        let writer = tokio::spawn(async move {
            for m in &sent {
                write_frame(&mut a, m).await.expect("write");
            }
        });
        let mut received = Vec::new();
        while let Some(m) = read_frame::<_, (u32, String)>(&mut b, 4096)
            .await
            .expect("read")
        {
            received.push(m);
        }
        writer.await.expect("writer");
        assert_eq!(received, messages);
    }

    #[tokio::test]
    async fn an_oversized_length_is_refused_without_reading_the_body() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&100_000u32.to_be_bytes()).await.expect("write");
        let result = read_frame::<_, String>(&mut b, 1024).await;
        assert!(
            matches!(
                result,
                Err(FrameIoError::TooLarge {
                    len: 100_000,
                    max: 1024
                })
            ),
            "{result:?}"
        );
        let too_big = "y".repeat(2000);
        assert!(matches!(
            write_frame_limited(&mut a, &too_big, 1024).await,
            Err(FrameIoError::TooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn an_end_of_stream_inside_a_frame_is_truncation() {
        for cut in [1, 3, 4, 6] {
            let (mut a, mut b) = tokio::io::duplex(64);
            let bytes = proto::frame::encode(&"hello".to_owned(), 64).expect("encode");
            a.write_all(&bytes[..cut]).await.expect("write");
            drop(a);
            let result = read_frame::<_, String>(&mut b, 64).await;
            assert!(
                matches!(result, Err(FrameIoError::Truncated)),
                "cut {cut}: {result:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_stalling_mid_frame_times_out_but_an_idle_one_does_not() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let limits = FrameLimits {
            max_len: 64,
            mid_frame_timeout: Duration::from_secs(5),
            ..FrameLimits::default()
        };
        // Idle between frames: still waiting after far longer than the mid-frame timeout.
        let idle = tokio::time::timeout(
            Duration::from_secs(60),
            read_frame_with::<_, String>(&mut b, limits),
        )
        .await;
        assert!(idle.is_err(), "an idle stream must not time out by itself");
        let bytes = proto::frame::encode(&"hello".to_owned(), 64).expect("encode");
        a.write_all(&bytes[..5]).await.expect("write");
        let started = tokio::time::Instant::now();
        let result = read_frame_with::<_, String>(&mut b, limits).await;
        assert!(
            matches!(result, Err(FrameIoError::Stalled(_))),
            "{result:?}"
        );
        assert_eq!(started.elapsed(), limits.mid_frame_timeout);
        drop(a);
    }

    proptest::proptest! {
        #[test]
        fn random_and_corrupted_streams_never_panic_nor_exceed_the_limit(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
            flip in proptest::prelude::any::<usize>(),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("runtime");
            let valid = proto::frame::encode(&(7u64, "text".to_owned(), vec![1u8; 40]), 1024)
                .expect("encode");
            let mut corrupted = valid.clone();
            let at = flip % corrupted.len();
            corrupted[at] ^= 0x5a;
            for input in [bytes.as_slice(), corrupted.as_slice(), &[valid.as_slice(), &bytes].concat()] {
                runtime.block_on(async {
                    let mut stream = input;
                    for _ in 0..=input.len() {
                        match read_frame::<_, (u64, String, Vec<u8>)>(&mut stream, 1024).await {
                            Ok(Some(_)) => {}
                            Ok(None) | Err(_) => break,
                        }
                    }
                });
            }
        }
    }
}
