//! Raw UDP beside QUIC on one socket: STUN, connectivity checks and hole-punching probes
//! must leave from the very port the QUIC endpoint uses, or the NAT mapping they discover
//! or open is not the one QUIC traffic gets.
//!
//! Demultiplexing follows RFC 9443: with QUIC-bit greasing off, every QUIC packet has the
//! fixed bit (0x40) of its first byte set, so a datagram whose first byte has it clear
//! (STUN is 0x00–0x03) is not QUIC and goes to [`RawUdp`]. Everything else goes to quinn.
//! A receive buffer holding several GRO-coalesced datagrams (equal-sized ones from one
//! sender, `stride` bytes apart, the last possibly shorter) is split the same way segment
//! by segment: raw segments are taken out and the QUIC ones closed up, so quinn still sees
//! a valid batch.

use crate::quic::{ConnectError, Endpoint, ServerOptions};
use proto::SecretKey;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::sync::{Mutex, mpsc};

/// How many non-QUIC datagrams wait for [`RawUdp::recv_from`] before newer ones are dropped.
/// A supernode takes every parked client's heartbeats here (thousands a second), so a
/// reader delayed for a moment must not lose them; the queue only holds what arrives.
const RAW_QUEUE_DATAGRAMS: usize = 4096;

/// Whether a datagram is not QUIC (fixed bit clear; RFC 9000 §17, RFC 9443).
pub fn is_raw_datagram(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|first| first & 0x40 == 0)
}

/// The non-QUIC side of a shared socket: send any datagram from the endpoint's port, and
/// receive the datagrams that are not QUIC.
pub struct RawUdp {
    socket: tokio::net::UdpSocket,
    received: Mutex<mpsc::Receiver<(Vec<u8>, SocketAddr)>>,
}

impl std::fmt::Debug for RawUdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawUdp")
            .field("local_addr", &self.socket.local_addr().ok())
            .finish()
    }
}

impl RawUdp {
    /// Sends `datagram` from the endpoint's socket.
    pub async fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.socket.send_to(datagram, to).await
    }

    /// Sends `datagram` now if the socket has room, else drops it (as the network may):
    /// for callers that must not wait, such as a server core's loop.
    pub fn try_send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.socket.try_send_to(datagram, to)
    }

    /// The next non-QUIC datagram and its sender; `None` once the endpoint has stopped.
    pub async fn recv_from(&self) -> Option<(Vec<u8>, SocketAddr)> {
        self.received.lock().await.recv().await
    }

    /// Waits for non-QUIC datagrams and appends every one already queued, up to `limit`, to
    /// `batch`: a busy reader (a supernode taking heartbeats) wakes once per batch, not once
    /// per datagram. Returns how many were appended; 0 once the endpoint has stopped.
    pub async fn recv_many(&self, batch: &mut Vec<(Vec<u8>, SocketAddr)>, limit: usize) -> usize {
        self.received.lock().await.recv_many(batch, limit).await
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

#[derive(Debug)]
struct DemuxSocket {
    inner: Arc<dyn quinn::AsyncUdpSocket>,
    raw: mpsc::Sender<(Vec<u8>, SocketAddr)>,
}

impl DemuxSocket {
    /// Hands the raw datagrams among `buf`'s `stride`-byte segments to [`RawUdp`] and moves
    /// the QUIC ones together at the front; returns their length. Segments keep their
    /// order, and only the last can be short, so the result is again a valid batch.
    fn take_raw_segments(&self, buf: &mut [u8], stride: usize, from: SocketAddr) -> usize {
        let stride = if stride == 0 { buf.len() } else { stride };
        let mut kept_len = 0;
        let mut start = 0;
        while start < buf.len() {
            let end = start.saturating_add(stride).min(buf.len());
            if is_raw_datagram(&buf[start..end]) {
                // A full queue means nobody is reading raw datagrams; dropping is what
                // the network would do.
                let _ = self.raw.try_send((buf[start..end].to_vec(), from));
            } else {
                buf.copy_within(start..end, kept_len);
                kept_len += end - start;
            }
            start = end;
        }
        kept_len
    }
}

impl quinn::AsyncUdpSocket for DemuxSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn quinn::UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &quinn::udp::Transmit<'_>) -> io::Result<()> {
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [quinn::udp::RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            let received = ready!(self.inner.poll_recv(cx, bufs, meta))?;
            let mut kept = 0;
            for i in 0..received.min(bufs.len()).min(meta.len()) {
                let mut this = meta[i];
                let len = this.len.min(bufs[i].len());
                this.len = self.take_raw_segments(&mut bufs[i][..len], this.stride, this.addr);
                if this.len == 0 {
                    continue;
                }
                if kept != i {
                    let (front, back) = bufs.split_at_mut(i);
                    front[kept][..this.len].copy_from_slice(&back[0][..this.len]);
                }
                meta[kept] = this;
                kept += 1;
            }
            if kept > 0 || received == 0 {
                return Poll::Ready(Ok(kept));
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

impl Endpoint {
    /// Binds `addr` for QUIC as [`Endpoint::bind`] does, and also returns the [`RawUdp`]
    /// side of the same socket for STUN and hole punching.
    pub fn bind_with_raw(
        addr: SocketAddr,
        identity: &SecretKey,
        server: Option<ServerOptions>,
    ) -> Result<(Self, RawUdp), ConnectError> {
        let socket = std::net::UdpSocket::bind(addr)?;
        // A second descriptor for the same socket, used only for sending raw datagrams;
        // every receive goes through quinn's descriptor and the demultiplexer.
        let sender = socket.try_clone()?;
        sender.set_nonblocking(true)?;
        let sender = tokio::net::UdpSocket::from_std(sender)?;
        let runtime = quinn::TokioRuntime;
        let inner = quinn::Runtime::wrap_udp_socket(&runtime, socket)?;
        let (raw_tx, raw_rx) = mpsc::channel(RAW_QUEUE_DATAGRAMS);
        let demux = Arc::new(DemuxSocket { inner, raw: raw_tx });
        let endpoint = Endpoint::from_abstract_socket(demux, identity, server)?;
        Ok((
            endpoint,
            RawUdp {
                socket: sender,
                received: Mutex::new(raw_rx),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stun_is_raw_and_quic_is_not() {
        // A STUN Binding request header (RFC 8489) and QUIC long and short headers.
        assert!(is_raw_datagram(&[
            0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42
        ]));
        assert!(is_raw_datagram(&[0x01, 0x01]));
        assert!(!is_raw_datagram(&[0xc0, 0x00, 0x00, 0x00, 0x01]));
        assert!(!is_raw_datagram(&[0x40, 0x12]));
        assert!(!is_raw_datagram(&[]));
    }

    /// Delivers one prepared batch of (buffer, sender, GRO stride), then nothing.
    #[derive(Debug)]
    struct Batch(std::sync::Mutex<Option<Vec<(Datagram, usize)>>>);

    type Datagram = (Vec<u8>, SocketAddr);

    impl Batch {
        /// One datagram per buffer.
        fn whole(datagrams: Vec<Datagram>) -> Self {
            Self::with_strides(datagrams.into_iter().map(|d| {
                let stride = d.0.len();
                (d, stride)
            }))
        }

        fn with_strides(buffers: impl IntoIterator<Item = (Datagram, usize)>) -> Self {
            Self(std::sync::Mutex::new(Some(buffers.into_iter().collect())))
        }
    }

    #[derive(Debug)]
    struct AlwaysWritable;

    impl quinn::UdpPoller for AlwaysWritable {
        fn poll_writable(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl quinn::AsyncUdpSocket for Batch {
        fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn quinn::UdpPoller>> {
            Box::pin(AlwaysWritable)
        }
        fn try_send(&self, _: &quinn::udp::Transmit<'_>) -> io::Result<()> {
            Ok(())
        }
        fn poll_recv(
            &self,
            _: &mut Context<'_>,
            bufs: &mut [IoSliceMut<'_>],
            meta: &mut [quinn::udp::RecvMeta],
        ) -> Poll<io::Result<usize>> {
            let Some(batch) = self.0.lock().expect("lock").take() else {
                return Poll::Pending;
            };
            for (i, ((datagram, from), stride)) in batch.iter().enumerate() {
                bufs[i][..datagram.len()].copy_from_slice(datagram);
                meta[i] = quinn::udp::RecvMeta {
                    addr: *from,
                    len: datagram.len(),
                    stride: *stride,
                    ..Default::default()
                };
            }
            Poll::Ready(Ok(batch.len()))
        }
        fn local_addr(&self) -> io::Result<SocketAddr> {
            Ok(SocketAddr::from(([127, 0, 0, 1], 1)))
        }
    }

    #[test]
    fn raw_datagrams_are_taken_out_of_a_batch_and_quic_ones_keep_their_order() {
        let from = |port| SocketAddr::from(([192, 0, 2, 1], port));
        let batch = vec![
            (vec![0x00, 0x01, 1], from(1)),
            (vec![0xc0, 2, 2], from(2)),
            (vec![0x01, 0x01, 3, 3], from(3)),
            (vec![0x41, 4, 4, 4, 4], from(4)),
            (vec![0x02], from(5)),
        ];
        let (tx, mut rx) = mpsc::channel(8);
        let demux = DemuxSocket {
            inner: Arc::new(Batch::whole(batch)),
            raw: tx,
        };
        let mut storage = [[0u8; 16]; 5];
        let mut bufs: Vec<IoSliceMut<'_>> =
            storage.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        let mut meta = vec![quinn::udp::RecvMeta::default(); 5];
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let kept = match quinn::AsyncUdpSocket::poll_recv(&demux, &mut cx, &mut bufs, &mut meta) {
            Poll::Ready(result) => result.expect("recv"),
            Poll::Pending => panic!("the batch is ready"),
        };
        assert_eq!(kept, 2);
        assert_eq!(&bufs[0][..meta[0].len], &[0xc0, 2, 2]);
        assert_eq!(meta[0].addr, from(2));
        assert_eq!(&bufs[1][..meta[1].len], &[0x41, 4, 4, 4, 4]);
        assert_eq!(meta[1].addr, from(4));
        let mut raw = Vec::new();
        while let Ok(datagram) = rx.try_recv() {
            raw.push(datagram);
        }
        assert_eq!(
            raw,
            vec![
                (vec![0x00, 0x01, 1], from(1)),
                (vec![0x01, 0x01, 3, 3], from(3)),
                (vec![0x02], from(5)),
            ]
        );
    }

    #[test]
    fn gro_coalesced_stun_responses_are_split_out_and_quic_segments_stay_a_valid_batch() {
        let from = |port| SocketAddr::from(([192, 0, 2, 1], port));
        let stun = |n: u8| vec![0x01, 0x01, 0x00, n];
        let quic = |n: u8| vec![0x41, n, n, n];
        let all_stun = [stun(1), stun(2), stun(3)].concat();
        let mixed = [quic(4), stun(5), quic(6), vec![0x41, 7]].concat();
        let demux_of = |buffers| {
            let (tx, rx) = mpsc::channel(8);
            let demux = DemuxSocket {
                inner: Arc::new(Batch::with_strides(buffers)),
                raw: tx,
            };
            (demux, rx)
        };
        let (demux, mut rx) = demux_of(vec![((all_stun, from(1)), 4), ((mixed, from(2)), 4)]);
        let mut storage = [[0u8; 32]; 2];
        let mut bufs: Vec<IoSliceMut<'_>> =
            storage.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        let mut meta = vec![quinn::udp::RecvMeta::default(); 2];
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let kept = match quinn::AsyncUdpSocket::poll_recv(&demux, &mut cx, &mut bufs, &mut meta) {
            Poll::Ready(result) => result.expect("recv"),
            Poll::Pending => panic!("the batch is ready"),
        };
        assert_eq!(kept, 1);
        assert_eq!(meta[0].addr, from(2));
        assert_eq!(meta[0].stride, 4);
        assert_eq!(
            &bufs[0][..meta[0].len],
            [quic(4), quic(6), vec![0x41, 7]].concat().as_slice()
        );
        let mut raw = Vec::new();
        while let Ok(datagram) = rx.try_recv() {
            raw.push(datagram);
        }
        assert_eq!(
            raw,
            vec![
                (stun(1), from(1)),
                (stun(2), from(1)),
                (stun(3), from(1)),
                (stun(5), from(2)),
            ]
        );
    }
}
