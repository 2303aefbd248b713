//! Shared helpers for the call media tests: keys, links between two calls, WAV files and
//! alignment.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use app::call_media::{CallMedia, CallMediaConfig, MediaKeys, Sink, Source};
use media::device::{FRAME_SAMPLES, FrameSource, SILENCE, WavFileSource};
use media::packet::PacketHeader;
use proto::peer::MediaParams;
use tokio::sync::mpsc;

/// How long any awaited condition may take before a test fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The two sides' keys of one call: A's send key is B's receive key and vice versa.
pub fn key_pair(seed: u8) -> (MediaKeys, MediaKeys) {
    let k1 = [seed.wrapping_mul(3).wrapping_add(1); 32];
    let k2 = [seed.wrapping_mul(3).wrapping_add(2); 32];
    let session_id = [seed; 32];
    (
        MediaKeys {
            send_key: k1,
            recv_key: k2,
            session_id,
        },
        MediaKeys {
            send_key: k2,
            recv_key: k1,
            session_id,
        },
    )
}

/// The media crate's committed speech samples.
pub fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../media/tests/data")
        .join(name)
}

/// A WAV file as the pipeline sees it: 48 kHz mono, `seconds` long (silence past its end).
pub fn read_wav(path: &Path, seconds: f64) -> Vec<f32> {
    let mut source = WavFileSource::open(path).expect("readable WAV");
    let frames = (seconds * 50.0).ceil() as usize;
    let mut out = Vec::with_capacity(frames * FRAME_SAMPLES);
    let mut frame = SILENCE;
    for _ in 0..frames {
        source.next_frame(&mut frame);
        out.extend_from_slice(&frame);
    }
    out
}

/// Length of a recording in seconds, and its samples.
pub fn read_recording(path: &Path) -> Vec<f32> {
    let mut source = WavFileSource::open(path).expect("recording is a valid WAV");
    let mut out = Vec::new();
    let mut frame = SILENCE;
    while !source.ended() {
        source.next_frame(&mut frame);
        out.extend_from_slice(&frame);
    }
    out
}

/// The lag (samples, 0 to `max_lag`) at which `recording` best matches `reference`, and
/// the normalised correlation there; recording samples past its end count as silence.
///
/// FFT correlation in `audiocheck` (built optimised): every lag, not a decimated search,
/// in milliseconds rather than the seconds a debug-build sum takes.
pub fn aligned_correlation(reference: &[f32], recording: &[f32], max_lag: usize) -> (usize, f64) {
    aligned_correlation_f64(&to_f64(reference), &to_f64(recording), max_lag)
}

fn to_f64(samples: &[f32]) -> Vec<f64> {
    samples.iter().map(|&s| f64::from(s)).collect()
}

fn aligned_correlation_f64(reference: &[f64], recording: &[f64], max_lag: usize) -> (usize, f64) {
    if reference.is_empty() {
        return (0, 0.0);
    }
    let (lag, c) = audiocheck::best_lag(
        reference,
        recording,
        0,
        reference.len(),
        0,
        i64::try_from(max_lag).expect("a small lag"),
    );
    (usize::try_from(lag).expect("lags from 0 up"), c)
}

/// Peak absolute level of a stretch of samples.
pub fn peak(samples: &[f32]) -> f32 {
    samples.iter().fold(0.0f32, |m, s| m.max(s.abs()))
}

/// What a link saw go by: arrival time and the authenticated (plaintext) header.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub at: Instant,
    pub header: PacketHeader,
    pub len: usize,
}

impl Seen {
    pub fn is_keepalive(&self) -> bool {
        self.header.flags.contains(media::packet::Flags::KEEP_ALIVE)
    }
}

/// One side's channels and what its outgoing packets looked like on the way.
pub struct Side {
    pub outgoing: mpsc::Sender<Vec<u8>>,
    pub incoming: mpsc::Receiver<Vec<u8>>,
    /// Extra sender into this side's incoming channel, for injecting datagrams.
    pub inject: mpsc::Sender<Vec<u8>>,
    /// Every datagram this side sent, as it passed the link.
    pub sent: mpsc::Receiver<Seen>,
}

fn tap(datagram: &[u8]) -> Option<Seen> {
    let (header, _) = PacketHeader::decode(datagram).ok()?;
    Some(Seen {
        at: Instant::now(),
        header,
        len: datagram.len(),
    })
}

/// Two sides joined by in-process channels.
pub fn channel_link() -> (Side, Side) {
    let (a_out, mut a_out_rx) = mpsc::channel::<Vec<u8>>(256);
    let (b_out, mut b_out_rx) = mpsc::channel::<Vec<u8>>(256);
    let (a_in, a_in_rx) = mpsc::channel::<Vec<u8>>(256);
    let (b_in, b_in_rx) = mpsc::channel::<Vec<u8>>(256);
    let (a_seen, a_seen_rx) = mpsc::channel(100_000);
    let (b_seen, b_seen_rx) = mpsc::channel(100_000);
    let b_inject = b_in.clone();
    let a_inject = a_in.clone();
    tokio::spawn(async move {
        while let Some(d) = a_out_rx.recv().await {
            if let Some(seen) = tap(&d) {
                let _ = a_seen.try_send(seen);
            }
            if b_in.send(d).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(d) = b_out_rx.recv().await {
            if let Some(seen) = tap(&d) {
                let _ = b_seen.try_send(seen);
            }
            if a_in.send(d).await.is_err() {
                return;
            }
        }
    });
    (
        Side {
            outgoing: a_out,
            incoming: a_in_rx,
            inject: a_inject,
            sent: a_seen_rx,
        },
        Side {
            outgoing: b_out,
            incoming: b_in_rx,
            inject: b_inject,
            sent: b_seen_rx,
        },
    )
}

/// Two sides joined by real UDP sockets on loopback.
pub async fn udp_link() -> (Side, Side) {
    let a_sock = std::sync::Arc::new(
        tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind"),
    );
    let b_sock = std::sync::Arc::new(
        tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind"),
    );
    let a_addr = a_sock.local_addr().expect("addr");
    let b_addr = b_sock.local_addr().expect("addr");
    let a = udp_side(a_sock, b_addr);
    let b = udp_side(b_sock, a_addr);
    (a, b)
}

fn udp_side(socket: std::sync::Arc<tokio::net::UdpSocket>, peer: SocketAddr) -> Side {
    let (out, mut out_rx) = mpsc::channel::<Vec<u8>>(256);
    let (inc, inc_rx) = mpsc::channel::<Vec<u8>>(256);
    let (seen, seen_rx) = mpsc::channel(100_000);
    let inject = inc.clone();
    let send_sock = socket.clone();
    tokio::spawn(async move {
        while let Some(d) = out_rx.recv().await {
            if let Some(s) = tap(&d) {
                let _ = seen.try_send(s);
            }
            let _ = send_sock.send_to(&d, peer).await;
        }
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            if from == peer && inc.send(buf[..n].to_vec()).await.is_err() {
                return;
            }
        }
    });
    Side {
        outgoing: out,
        incoming: inc_rx,
        inject,
        sent: seen_rx,
    }
}

/// Starts one side's call media.
pub fn start(
    keys: MediaKeys,
    source: Source,
    sink: Sink,
    side_out: mpsc::Sender<Vec<u8>>,
    side_in: mpsc::Receiver<Vec<u8>>,
) -> CallMedia {
    CallMedia::start(CallMediaConfig::new(
        keys,
        MediaParams::default(),
        source,
        sink,
        side_out,
        side_in,
    ))
    .expect("call media starts")
}

impl Side {
    /// Starts this side's call media on its channels. The side keeps `sent` and `inject`
    /// for the test; its `incoming` goes to the call (an empty stand-in is left behind).
    pub fn start(&mut self, keys: MediaKeys, source: Source, sink: Sink) -> CallMedia {
        let incoming = std::mem::replace(&mut self.incoming, mpsc::channel(1).1);
        start(keys, source, sink, self.outgoing.clone(), incoming)
    }
}

/// Waits until `count` packets matching `wanted` went by; returns them.
pub async fn await_packets(
    sent: &mut mpsc::Receiver<Seen>,
    count: usize,
    wanted: impl Fn(&Seen) -> bool,
) -> Vec<Seen> {
    let mut got = Vec::new();
    let collect = async {
        while got.len() < count {
            match sent.recv().await {
                Some(s) if wanted(&s) => got.push(s),
                Some(_) => {}
                None => break,
            }
        }
    };
    tokio::time::timeout(PATIENCE, collect)
        .await
        .expect("packets arrive in time");
    assert_eq!(got.len(), count, "the link closed early");
    got
}

/// Alignment of `recording` to `reference` window by window: for each `window`-sample
/// stretch of the reference that carries sound, the best correlation within
/// ±`slack` samples of `lag` (recording samples past its end count as silence). Returns
/// (window start, lag, correlation) per window.
///
/// A real-time call may shift its timeline by a frame now and then (a late thread, a
/// device underrun); this tells such a shift from audio that did not arrive.
pub fn windowed_alignment(
    reference: &[f32],
    recording: &[f32],
    lag: usize,
    window: usize,
    slack: usize,
) -> Vec<(usize, usize, f64)> {
    windowed_alignment_f64(&to_f64(reference), &to_f64(recording), lag, window, slack)
}

fn windowed_alignment_f64(
    reference: &[f64],
    recording: &[f64],
    lag: usize,
    window: usize,
    slack: usize,
) -> Vec<(usize, usize, f64)> {
    let mut out = Vec::new();
    let mut start = 0;
    let lag = i64::try_from(lag).expect("a small lag");
    let slack = i64::try_from(slack).expect("a small slack");
    while start + window <= reference.len() {
        let r = &reference[start..start + window];
        if r.iter().fold(0.0f64, |m, s| m.max(s.abs())) > 0.05 {
            let (best, c) = audiocheck::best_lag(
                reference,
                recording,
                start,
                start + window,
                (lag - slack).max(0),
                lag + slack,
            );
            out.push((start, usize::try_from(best).expect("lags from 0 up"), c));
        }
        start += window;
    }
    out
}

/// Mean of the windowed correlations.
pub fn mean_windowed_correlation(windows: &[(usize, usize, f64)]) -> f64 {
    if windows.is_empty() {
        return 0.0;
    }
    windows.iter().map(|w| w.2).sum::<f64>() / windows.len() as f64
}

/// How well `heard` reproduces `said`: the global aligned correlation, and the same
/// allowing the timeline to shift between 1 s windows (each window aligned within
/// ±60 ms of the global lag). A real-time call may shift its timeline by a frame in a
/// pause (the jitter buffer adapting, a late thread); the audio is still all there.
/// Returns (global lag, global correlation, best of global and windowed).
pub fn heard_correlation(said: &[f32], heard: &[f32], max_lag: usize) -> (usize, f64, f64) {
    let (said, heard) = (to_f64(said), to_f64(heard));
    let (lag, global) = aligned_correlation_f64(&said, &heard, max_lag);
    let windows = windowed_alignment_f64(&said, &heard, lag, 48_000, 48 * 60);
    (lag, global, global.max(mean_windowed_correlation(&windows)))
}

/// Real-time tests in one binary take turns: two calls competing for a loaded CPU would
/// measure the machine, not the code.
pub async fn real_time_slot() -> tokio::sync::MutexGuard<'static, ()> {
    static SLOT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SLOT.lock().await
}
