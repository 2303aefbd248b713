//! Parked sessions: the small sealed UDP datagrams a client exchanges with its home
//! supernode while its session is parked (no QUIC connection open), and the key material
//! both sides derive for them.
//!
//! A session is parked by `SupernodeToClient::ParkOffer` → `ClientToSupernode::ParkAccept`
//! → `SupernodeToClient::Parked` on the live connection; both sides then take the park key
//! from that connection with the TLS keying-material exporter ([`PARK_EXPORTER_LABEL`],
//! RFC 8446 §7.5) and the connection closes. From then on:
//! - the client sends a [`ParkKind::Heartbeat`] from its QUIC socket to the supernode's QUIC
//!   port at its keep-alive interval; the supernode answers [`ParkKind::HeartbeatAck`], or
//!   [`ParkKind::Wake`] when it holds messages for the client;
//! - the supernode sends [`ParkKind::Wake`] (retried) when something arrives for the client;
//!   the client opens a new connection and resumes with `ClientToSupernode::Resume`.
//!
//! Wire format (all integers big-endian), 42 bytes:
//!
//! | bytes | field |
//! | --- | --- |
//! | 1 | [`PARK_FIRST_BYTE`] (0x0c: the QUIC fixed bit 0x40 is clear and it is not STUN, 0–3) |
//! | 1 | kind ([`ParkKind`]) |
//! | 16 | [`ParkToken`]: which parked session (chosen by the supernode at random) |
//! | 8 | counter: strictly increasing per direction, the AEAD nonce |
//! | 16 | ChaCha20-Poly1305 tag over the empty plaintext, the 26 header bytes as AAD |
//!
//! The nonce is the direction byte (0 client → supernode, 1 supernode → client), three zero
//! bytes and the counter, so the two directions never share a nonce under the one key. A
//! receiver accepts each counter once ([`ReplayWindow`]), so a recorded heartbeat cannot
//! keep a dead client online and a recorded wake cannot wake it twice.
//!
//! What it does not do: timers, retries or state (the supernode core and
//! `client_core::Homing` own those), sockets.

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use serde::{Deserialize, Serialize};

/// The first byte of every park datagram.
pub const PARK_FIRST_BYTE: u8 = 0x0c;
/// The exporter label both sides pass to the TLS keying-material exporter.
pub const PARK_EXPORTER_LABEL: &[u8] = b"EXPORTER-peerphone-park-v1";
/// Bytes of every park datagram.
pub const PARK_DATAGRAM_LEN: usize = HEADER_LEN + TAG_LEN;
const HEADER_LEN: usize = 1 + 1 + 16 + 8;
const TAG_LEN: usize = 16;

/// Identifies one parked session in its datagrams.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ParkToken(pub [u8; 16]);

impl std::fmt::Debug for ParkToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ParkToken({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

/// The key a parked session's datagrams are sealed with; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ParkKey([u8; 32]);

impl std::fmt::Debug for ParkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ParkKey(..)")
    }
}

impl ParkKey {
    /// The key from 32 bytes of TLS exporter output ([`PARK_EXPORTER_LABEL`], empty context).
    pub fn from_exporter(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

/// Who sent a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParkDirection {
    ClientToSupernode = 0,
    SupernodeToClient = 1,
}

/// What a park datagram says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ParkKind {
    /// Client → supernode: still here (and the NAT binding stays open).
    Heartbeat = 1,
    /// Supernode → client: answers a heartbeat; nothing waits.
    HeartbeatAck = 2,
    /// Supernode → client: messages wait; connect and resume.
    Wake = 3,
}

impl ParkKind {
    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Heartbeat),
            2 => Some(Self::HeartbeatAck),
            3 => Some(Self::Wake),
            _ => None,
        }
    }

    /// The direction this kind travels in.
    pub fn direction(self) -> ParkDirection {
        match self {
            Self::Heartbeat => ParkDirection::ClientToSupernode,
            Self::HeartbeatAck | Self::Wake => ParkDirection::SupernodeToClient,
        }
    }
}

/// A park datagram's header, read before its session (and key) is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParkHeader {
    pub kind: ParkKind,
    pub token: ParkToken,
    pub counter: u64,
}

/// A datagram that is not a well-formed park datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParkDecodeError {
    #[error("not a park datagram (first byte or length)")]
    NotPark,
    #[error("unknown park datagram kind {0}")]
    UnknownKind(u8),
}

/// A park datagram that does not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParkOpenError {
    #[error(transparent)]
    Decode(#[from] ParkDecodeError),
    #[error("park datagram travels the wrong way")]
    WrongDirection,
    #[error("park datagram for another session")]
    WrongToken,
    #[error("park datagram does not authenticate")]
    Forged,
    #[error("park datagram replayed")]
    Replayed,
}

/// Whether `datagram` looks like a park datagram (first byte only: cheap demultiplexing).
pub fn is_park_datagram(datagram: &[u8]) -> bool {
    datagram.first() == Some(&PARK_FIRST_BYTE)
}

/// Reads the header of a park datagram without authenticating it.
pub fn decode_header(datagram: &[u8]) -> Result<ParkHeader, ParkDecodeError> {
    if datagram.len() != PARK_DATAGRAM_LEN || datagram[0] != PARK_FIRST_BYTE {
        return Err(ParkDecodeError::NotPark);
    }
    let kind = ParkKind::from_byte(datagram[1]).ok_or(ParkDecodeError::UnknownKind(datagram[1]))?;
    let mut token = [0u8; 16];
    token.copy_from_slice(&datagram[2..18]);
    let mut counter = [0u8; 8];
    counter.copy_from_slice(&datagram[18..26]);
    Ok(ParkHeader {
        kind,
        token: ParkToken(token),
        counter: u64::from_be_bytes(counter),
    })
}

fn nonce(direction: ParkDirection, counter: u64) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[0] = direction as u8;
    nonce[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::from(nonce)
}

/// Seals one park datagram.
pub fn seal(key: &ParkKey, kind: ParkKind, token: ParkToken, counter: u64) -> Vec<u8> {
    let mut datagram = Vec::with_capacity(PARK_DATAGRAM_LEN);
    datagram.push(PARK_FIRST_BYTE);
    datagram.push(kind as u8);
    datagram.extend_from_slice(&token.0);
    datagram.extend_from_slice(&counter.to_be_bytes());
    let cipher = ChaCha20Poly1305::new(&Key::from(key.0));
    let tag = cipher
        .encrypt_inout_detached(
            &nonce(kind.direction(), counter),
            &datagram,
            (&mut [][..]).into(),
        )
        .expect("invariant: an empty plaintext is within the AEAD's length limit");
    datagram.extend_from_slice(&tag);
    datagram
}

/// Authenticates a park datagram for the session `token` under `key`, expecting `direction`,
/// and checks its counter against `window` (which it advances only for an authentic one).
pub fn open(
    key: &ParkKey,
    token: ParkToken,
    direction: ParkDirection,
    window: &mut ReplayWindow,
    datagram: &[u8],
) -> Result<ParkHeader, ParkOpenError> {
    let header = decode_header(datagram)?;
    if header.kind.direction() != direction {
        return Err(ParkOpenError::WrongDirection);
    }
    if header.token != token {
        return Err(ParkOpenError::WrongToken);
    }
    if !window.fresh(header.counter) {
        return Err(ParkOpenError::Replayed);
    }
    let cipher = ChaCha20Poly1305::new(&Key::from(key.0));
    let tag = Tag::try_from(&datagram[HEADER_LEN..]).map_err(|_| ParkDecodeError::NotPark)?;
    cipher
        .decrypt_inout_detached(
            &nonce(direction, header.counter),
            &datagram[..HEADER_LEN],
            (&mut [][..]).into(),
            &tag,
        )
        .map_err(|_| ParkOpenError::Forged)?;
    window.accept(header.counter);
    Ok(header)
}

/// Accepts each counter at most once: the highest seen and a 64-counter window below it
/// (later datagrams may overtake earlier ones). 16 bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    highest: u64,
    /// Bit `i`: counter `highest - i` was accepted.
    seen: u64,
}

impl ReplayWindow {
    fn fresh(&self, counter: u64) -> bool {
        if counter == 0 {
            // Counters start at 1, so a window that saw nothing needs no flag.
            return false;
        }
        if counter > self.highest {
            return true;
        }
        let behind = self.highest - counter;
        behind < 64 && self.seen & (1 << behind) == 0
    }

    fn accept(&mut self, counter: u64) {
        if counter > self.highest {
            let shift = counter - self.highest;
            self.seen = if shift >= 64 { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.highest = counter;
        } else {
            self.seen |= 1 << (self.highest - counter);
        }
    }
}

/// Feeds arbitrary bytes to the park decoders; the fuzz target and the random-bytes test
/// call it. Never panics.
pub fn fuzz_decode(bytes: &[u8]) {
    let _ = decode_header(bytes);
    let key = ParkKey::from_exporter([7; 32]);
    let mut window = ReplayWindow::default();
    let token = decode_header(bytes).map_or(ParkToken([0; 16]), |h| h.token);
    for direction in [
        ParkDirection::ClientToSupernode,
        ParkDirection::SupernodeToClient,
    ] {
        let _ = open(&key, token, direction, &mut window, bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TOKEN: ParkToken = ParkToken([9; 16]);

    fn key() -> ParkKey {
        ParkKey::from_exporter([3; 32])
    }

    #[test]
    fn a_sealed_heartbeat_opens_once_and_only_the_right_way() {
        let datagram = seal(&key(), ParkKind::Heartbeat, TOKEN, 1);
        assert_eq!(datagram.len(), PARK_DATAGRAM_LEN);
        assert!(is_park_datagram(&datagram));
        assert_eq!(datagram[0] & 0x40, 0, "never taken for QUIC");
        let mut window = ReplayWindow::default();
        let header = open(
            &key(),
            TOKEN,
            ParkDirection::ClientToSupernode,
            &mut window,
            &datagram,
        )
        .expect("opens");
        assert_eq!(header.kind, ParkKind::Heartbeat);
        assert_eq!(header.counter, 1);
        assert_eq!(
            open(
                &key(),
                TOKEN,
                ParkDirection::ClientToSupernode,
                &mut window,
                &datagram
            ),
            Err(ParkOpenError::Replayed)
        );
        let mut fresh = ReplayWindow::default();
        assert_eq!(
            open(
                &key(),
                TOKEN,
                ParkDirection::SupernodeToClient,
                &mut fresh,
                &datagram
            ),
            Err(ParkOpenError::WrongDirection)
        );
    }

    #[test]
    fn a_wrong_key_token_or_flipped_bit_is_refused() {
        let datagram = seal(&key(), ParkKind::Wake, TOKEN, 5);
        let mut window = ReplayWindow::default();
        let other = ParkKey::from_exporter([4; 32]);
        assert_eq!(
            open(
                &other,
                TOKEN,
                ParkDirection::SupernodeToClient,
                &mut window,
                &datagram
            ),
            Err(ParkOpenError::Forged)
        );
        assert_eq!(
            open(
                &key(),
                ParkToken([1; 16]),
                ParkDirection::SupernodeToClient,
                &mut window,
                &datagram
            ),
            Err(ParkOpenError::WrongToken)
        );
        for at in [1, 20, 30, PARK_DATAGRAM_LEN - 1] {
            let mut bent = datagram.clone();
            bent[at] ^= 1;
            let token = decode_header(&bent).map_or(TOKEN, |h| h.token);
            assert!(
                open(
                    &key(),
                    token,
                    ParkDirection::SupernodeToClient,
                    &mut window,
                    &bent
                )
                .is_err(),
                "bit flipped at {at}"
            );
        }
        // The forgeries did not advance the window: the real one still opens.
        assert!(
            open(
                &key(),
                TOKEN,
                ParkDirection::SupernodeToClient,
                &mut window,
                &datagram
            )
            .is_ok()
        );
    }

    #[test]
    fn the_window_takes_reordered_counters_once_and_forgets_far_old_ones() {
        let mut window = ReplayWindow::default();
        for counter in [3, 1, 2, 70, 10, 69] {
            assert!(window.fresh(counter), "{counter}");
            window.accept(counter);
        }
        for counter in [0, 1, 3, 70, 10, 69] {
            assert!(!window.fresh(counter), "{counter}");
        }
        assert!(window.fresh(68));
        assert!(window.fresh(71));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            fuzz_decode(&bytes);
            let mut framed = bytes.clone();
            framed.resize(PARK_DATAGRAM_LEN, 0);
            framed[0] = PARK_FIRST_BYTE;
            fuzz_decode(&framed);
        }
    }
}
