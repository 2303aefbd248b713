//! ICE-like connectivity checks between two peers (RFC 8445, simplified), sans-IO.
//!
//! Both peers exchange candidates (host, server-reflexive, relayed) and short-term
//! credentials through signalling, then run [`HolePunch`] at the same time: each sends STUN
//! Binding checks (USERNAME, PRIORITY, ICE-CONTROLLING/CONTROLLED, MESSAGE-INTEGRITY with the
//! peer's password, FINGERPRINT) on every candidate pair, paced one per `pacing` interval,
//! with retransmissions. Checks leaving each side open its own NAT for the other's, which is
//! what punches the hole; a check arriving from an unknown address adds a peer-reflexive
//! candidate (how a symmetric NAT's fresh port is learnt).
//!
//! Pairs are keyed by the local side they leave from ([`Via::Direct`]: the host socket, which
//! also carries server-reflexive candidates; [`Via::Relay`]: a TURN allocation) and the remote
//! address. The controlling agent nominates the pair [`crate::path::select_path`] prefers
//! (USE-CANDIDATE plus a rising [`Nomination`] counter), and renominates when the policy
//! changes its mind: relay to direct when a direct pair opens, direct to relay when it dies.
//! The controlled agent follows the latest nomination. The selected pair gets a consent check
//! every `consent_interval`, and is declared dead after `dead_after` without an answer; other
//! working pairs get a keep-alive check every `keepalive_interval` (≤ 15 s) to hold their NAT
//! bindings. Failed direct pairs are retried every `recheck_interval` while on the relay.
//!
//! Does not: gather host candidates (the shell knows its interfaces), talk to TURN servers
//! (the shell wraps [`Via::Relay`] transmits), carry media, or run more than one component.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::path::{PathKind, PathOption, select_path};
use crate::stun::attributes::{
    IceControlled, IceControlling, Nomination, Priority, UseCandidate, Username, XorMappedAddress,
};
use crate::stun::{
    IntegrityKey, Message, MessageClass, TransactionId, binding_request, decode, encode, methods,
};
use crate::{Transmit, Via};

/// Kind of a candidate (RFC 8445 §5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CandidateKind {
    /// An address of the host's own socket.
    Host,
    /// The host socket's address as a STUN server saw it.
    ServerReflexive,
    /// Learnt from a check arriving from an unsignalled address.
    PeerReflexive,
    /// A TURN allocation's relayed address.
    Relayed,
}

impl CandidateKind {
    /// RFC 8445 §5.1.2.2 type preference.
    pub fn type_preference(self) -> u32 {
        match self {
            CandidateKind::Host => 126,
            CandidateKind::PeerReflexive => 110,
            CandidateKind::ServerReflexive => 100,
            CandidateKind::Relayed => 0,
        }
    }
}

/// A transport address one peer offers the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Candidate {
    /// Its kind.
    pub kind: CandidateKind,
    /// The address.
    pub addr: SocketAddr,
    /// RFC 8445 §5.1.2 priority.
    pub priority: u32,
}

impl Candidate {
    /// A candidate of `kind` at `addr` with the RFC 8445 priority for `local_preference`
    /// (65535 for the only interface).
    pub fn new(kind: CandidateKind, addr: SocketAddr, local_preference: u16) -> Self {
        let priority =
            (kind.type_preference() << 24) | (u32::from(local_preference) << 8) | (256 - 1);
        Candidate {
            kind,
            addr,
            priority,
        }
    }

    /// A host candidate.
    pub fn host(addr: SocketAddr) -> Self {
        Self::new(CandidateKind::Host, addr, 65535)
    }

    /// A server-reflexive candidate.
    pub fn server_reflexive(addr: SocketAddr) -> Self {
        Self::new(CandidateKind::ServerReflexive, addr, 65535)
    }

    /// A relayed candidate.
    pub fn relayed(addr: SocketAddr) -> Self {
        Self::new(CandidateKind::Relayed, addr, 65535)
    }

    /// The local side checks from this candidate leave from.
    pub fn via(&self) -> Via {
        match self.kind {
            CandidateKind::Relayed => Via::Relay { relayed: self.addr },
            _ => Via::Direct,
        }
    }
}

/// Short-term credentials of one side (RFC 8445 §5.3), exchanged through signalling.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceCredentials {
    /// Username fragment.
    pub ufrag: String,
    /// Password.
    pub pwd: String,
}

impl std::fmt::Debug for IceCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceCredentials")
            .field("ufrag", &self.ufrag)
            .finish_non_exhaustive()
    }
}

impl IceCredentials {
    /// Fresh random credentials (8-character ufrag, 24-character password).
    pub fn random(rng: &mut impl Rng) -> Self {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut text = |len: usize| -> String {
            (0..len)
                .map(|_| char::from(ALPHABET[(rng.next_u32() % 64) as usize]))
                .collect()
        };
        IceCredentials {
            ufrag: text(8),
            pwd: text(24),
        }
    }
}

/// Which side nominates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Nominates pairs (the caller).
    Controlling,
    /// Follows nominations (the callee).
    Controlled,
}

/// Configuration of a [`HolePunch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolePunchConfig {
    /// Our role.
    pub role: Role,
    /// Random tie-breaker for role conflicts.
    pub tie_breaker: u64,
    /// Our credentials.
    pub local: IceCredentials,
    /// The peer's credentials.
    pub remote: IceCredentials,
    /// Interval between new checks (RFC 8445 Ta).
    pub pacing: Duration,
    /// First retransmission timeout of a check, doubled up to `max_check_rto`.
    pub check_rto: Duration,
    /// Largest retransmission timeout.
    pub max_check_rto: Duration,
    /// Transmissions of one check before its pair fails.
    pub check_transmissions: u32,
    /// Consent check interval on the selected pair.
    pub consent_interval: Duration,
    /// Silence on the selected pair after which it is dead.
    pub dead_after: Duration,
    /// Keep-alive interval on working pairs that are not selected.
    pub keepalive_interval: Duration,
    /// Retry interval of failed direct pairs while the selected pair is relayed.
    pub recheck_interval: Duration,
    /// Give up when no pair works this long after the last remote candidate arrived.
    pub connect_timeout: Duration,
    /// Media that arrived steadily on the selected pair (see [`HolePunch::note_media`])
    /// and then stopped this long ago makes the other kind of pair carry a copy at once
    /// ([`HolePunch::backup_pair`]), without waiting for consent answers to be overdue.
    pub media_silence_backup: Duration,
    /// Gaps between media datagrams up to this long count as a steady stream (a call's
    /// 20 ms frames); a longer gap (a held peer's keep-alives) never triggers the copy.
    pub steady_media_gap: Duration,
}

impl HolePunchConfig {
    /// Defaults: 20 ms pacing, checks retransmitted at 250 ms doubling to 1 s (7 in all),
    /// consent every 1 s, dead after 4 s, keep-alives every 10 s, rechecks every 10 s,
    /// give up after 15 s.
    pub fn new(
        role: Role,
        tie_breaker: u64,
        local: IceCredentials,
        remote: IceCredentials,
    ) -> Self {
        HolePunchConfig {
            role,
            tie_breaker,
            local,
            remote,
            pacing: Duration::from_millis(20),
            check_rto: Duration::from_millis(250),
            max_check_rto: Duration::from_secs(1),
            check_transmissions: 7,
            consent_interval: Duration::from_secs(1),
            dead_after: Duration::from_secs(4),
            keepalive_interval: Duration::from_secs(10),
            recheck_interval: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(15),
            media_silence_backup: Duration::from_millis(100),
            steady_media_gap: Duration::from_millis(60),
        }
    }
}

/// A candidate pair as reported in events: where to send the call's packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PathPair {
    /// The local side: host socket or a TURN allocation.
    pub via: Via,
    /// The peer's address.
    pub remote: SocketAddr,
    /// Kind of the peer's candidate.
    pub remote_kind: CandidateKind,
}

impl PathPair {
    /// Direct or relayed (relayed on either side).
    pub fn kind(&self) -> PathKind {
        if matches!(self.via, Via::Relay { .. }) || self.remote_kind == CandidateKind::Relayed {
            PathKind::Relay
        } else {
            PathKind::Direct
        }
    }
}

/// Why hole punching gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// No pair ever worked within the connect timeout.
    NoWorkingPair,
    /// Every working pair died.
    AllPathsDead,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PunchEvent {
    /// The first pair was selected.
    Connected {
        /// The pair.
        pair: PathPair,
    },
    /// Another pair was selected.
    PathChanged {
        /// The new pair.
        pair: PathPair,
    },
    /// Nothing works; the agent stops.
    Failed {
        /// Why.
        reason: FailReason,
    },
}

type PairKey = (Via, SocketAddr);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PairState {
    Waiting,
    InProgress,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone)]
struct Check {
    id: TransactionId,
    payload: Vec<u8>,
    transmissions: u32,
    rto: Duration,
    next_retransmit: Instant,
    nomination: Option<u32>,
}

#[derive(Debug, Clone)]
struct Pair {
    remote_kind: CandidateKind,
    priority: u64,
    state: PairState,
    check: Option<Check>,
    last_response: Option<Instant>,
    next_keepalive: Option<Instant>,
    failed_at: Option<Instant>,
    /// When media last arrived on this pair, and whether it had been arriving steadily.
    last_media: Option<Instant>,
    steady_media: bool,
}

const MAX_REMOTE_CANDIDATES: usize = 32;
const MAX_PAIRS: usize = 128;
const MAX_QUEUED: usize = 256;

/// Punches a UDP path to one peer. See the module docs.
///
/// Sans-IO: never touches a socket, never reads the clock. After every `handle_*`, drain
/// [`poll_transmit`](Self::poll_transmit) until `None`, then
/// [`poll_event`](Self::poll_event), then arm a timer for
/// [`poll_timeout`](Self::poll_timeout).
#[derive(Debug)]
pub struct HolePunch {
    config: HolePunchConfig,
    rng: StdRng,
    local_candidates: Vec<Candidate>,
    remote_candidates: Vec<Candidate>,
    pairs: BTreeMap<PairKey, Pair>,
    triggered: VecDeque<PairKey>,
    next_pacing: Instant,
    transmits: VecDeque<Transmit>,
    events: VecDeque<PunchEvent>,
    selected: Option<PairKey>,
    /// Controlling: the pair being nominated and its counter value.
    nominating: Option<(PairKey, u32)>,
    nomination_counter: u32,
    /// Controlled: the latest nomination received.
    nominated: Option<(PairKey, u32)>,
    give_up_at: Instant,
    failed: bool,
    /// Set when the selected pair died: only pairs answering since then count as alive,
    /// because pairs sharing the dead pair's network path are likely dead too.
    revalidate_since: Option<Instant>,
}

impl HolePunch {
    /// An agent starting at `now`; `seed` seeds transaction IDs.
    pub fn new(config: HolePunchConfig, now: Instant, seed: [u8; 32]) -> Self {
        let give_up_at = now + config.connect_timeout;
        HolePunch {
            config,
            rng: StdRng::from_seed(seed),
            local_candidates: Vec::new(),
            remote_candidates: Vec::new(),
            pairs: BTreeMap::new(),
            triggered: VecDeque::new(),
            next_pacing: now,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            selected: None,
            nominating: None,
            nomination_counter: 0,
            nominated: None,
            give_up_at,
            failed: false,
            revalidate_since: None,
        }
    }

    /// Our role (it may flip after a role conflict).
    pub fn role(&self) -> Role {
        self.config.role
    }

    /// Adds one of our candidates (to be signalled to the peer).
    pub fn add_local_candidate(&mut self, candidate: Candidate) {
        if self.local_candidates.contains(&candidate) {
            return;
        }
        self.local_candidates.push(candidate);
        let remotes = self.remote_candidates.clone();
        for remote in remotes {
            self.add_pair(candidate.via(), remote);
        }
    }

    /// Our candidates, for signalling.
    pub fn local_candidates(&self) -> &[Candidate] {
        &self.local_candidates
    }

    /// Adds a candidate the peer signalled.
    pub fn add_remote_candidate(&mut self, now: Instant, candidate: Candidate) {
        if self.failed
            || self.remote_candidates.len() >= MAX_REMOTE_CANDIDATES
            || self
                .remote_candidates
                .iter()
                .any(|c| c.addr == candidate.addr)
        {
            return;
        }
        self.remote_candidates.push(candidate);
        self.give_up_at = self.give_up_at.max(now + self.config.connect_timeout);
        let vias: Vec<Via> = self.local_vias();
        for via in vias {
            self.add_pair(via, candidate);
        }
    }

    /// Whether `remote`, reached over `via`, belongs to a pair: a signalled candidate, or a
    /// peer-reflexive address learnt from a check that passed MESSAGE-INTEGRITY. Shells use
    /// it to drop media from strangers before it reaches the call.
    pub fn knows_remote(&self, via: Via, remote: SocketAddr) -> bool {
        self.pairs.contains_key(&(via, remote))
    }

    /// While the selected pair's consent answers are overdue (none for two consent
    /// intervals) but it is not yet declared dead, the best working pair of the other kind
    /// (the relay under a direct pair).
    /// A shell sends media on both meanwhile, so a dying path costs about two consent
    /// intervals of media rather than all of `dead_after`; the receiver drops duplicates.
    ///
    /// Media that stops arriving on the selected pair after flowing steadily (a call sends
    /// a frame every 20 ms, through silence too) raises the same alarm after
    /// [`HolePunchConfig::media_silence_backup`], long before consent answers are overdue:
    /// a path that died in both directions then costs about that much audio.
    pub fn backup_pair(&self, now: Instant) -> Option<PathPair> {
        let selected = self.selected?;
        let pair = self.pairs.get(&selected)?;
        let last = pair.last_response?;
        let consent_overdue =
            now.saturating_duration_since(last) >= self.config.consent_interval * 2;
        let media_stopped = pair.steady_media
            && pair.last_media.is_some_and(|at| {
                now.saturating_duration_since(at) >= self.config.media_silence_backup
            });
        if !consent_overdue && !media_stopped {
            return None;
        }
        // Pairs of the same kind tend to die together (a host and a peer-reflexive pair
        // through one NAT), so the backup is of the other kind.
        let kind = self.path_pair(selected)?.kind();
        let options: Vec<PathOption<PairKey>> = self
            .options(now)
            .into_iter()
            .filter(|o| o.id != selected && o.kind != kind)
            .collect();
        select_path(None, &options).and_then(|key| self.path_pair(key))
    }

    /// Media (not a check) arrived from `remote` on `via`: feeds the early alarm of
    /// [`HolePunch::backup_pair`]. Unknown pairs are ignored.
    pub fn note_media(&mut self, now: Instant, via: Via, remote: SocketAddr) {
        let steady_gap = self.config.steady_media_gap;
        if let Some(pair) = self.pairs.get_mut(&(via, remote)) {
            pair.steady_media = pair
                .last_media
                .is_some_and(|at| now.saturating_duration_since(at) <= steady_gap);
            pair.last_media = Some(now);
        }
    }

    /// The selected pair, if any.
    pub fn selected_pair(&self) -> Option<PathPair> {
        self.selected.and_then(|key| self.path_pair(key))
    }

    /// A datagram arrived on the host socket.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, payload: &[u8]) {
        self.handle_on(now, Via::Direct, from, payload);
    }

    /// A datagram from `from` arrived through the TURN allocation `relayed`.
    pub fn handle_relayed_datagram(
        &mut self,
        now: Instant,
        relayed: SocketAddr,
        from: SocketAddr,
        payload: &[u8],
    ) {
        self.handle_on(now, Via::Relay { relayed }, from, payload);
    }

    /// The timer armed from [`poll_timeout`](Self::poll_timeout) fired.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.failed {
            return;
        }
        self.retransmit(now);
        self.keep_alive(now);
        self.detect_dead(now);
        self.recheck(now);
        if now >= self.next_pacing && self.start_next_check(now) {
            self.next_pacing = now + self.config.pacing;
        }
        self.update_selection(now);
        if self.selected.is_none()
            && now >= self.give_up_at
            && !self.pairs.values().any(|p| p.state == PairState::Succeeded)
        {
            self.fail(FailReason::NoWorkingPair);
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<PunchEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.failed {
            return None;
        }
        let mut next = Vec::new();
        if let Some(since) = self.revalidate_since {
            next.push(since + self.config.dead_after);
        }
        if self.selected.is_none() && !self.pairs.values().any(|p| p.state == PairState::Succeeded)
        {
            next.push(self.give_up_at);
        }
        let on_relay = self
            .selected_pair()
            .is_none_or(|p| p.kind() == PathKind::Relay);
        let work_waiting = !self.triggered.is_empty()
            || self.pairs.values().any(|p| p.state == PairState::Waiting);
        if work_waiting {
            next.push(self.next_pacing);
        }
        for (key, pair) in &self.pairs {
            if let Some(check) = &pair.check {
                next.push(check.next_retransmit);
            }
            if let Some(at) = pair.next_keepalive {
                next.push(at);
            }
            if pair.state == PairState::Succeeded
                && let Some(last) = pair.last_response
            {
                next.push(last + self.dead_after(*key));
            }
            if on_relay && let Some(at) = pair.failed_at {
                next.push(at + self.config.recheck_interval);
            }
        }
        next.into_iter().min()
    }

    fn local_vias(&self) -> Vec<Via> {
        let mut vias: Vec<Via> = self.local_candidates.iter().map(Candidate::via).collect();
        vias.sort();
        vias.dedup();
        vias
    }

    fn local_priority(&self, via: Via) -> u32 {
        self.local_candidates
            .iter()
            .filter(|c| c.via() == via)
            .map(|c| c.priority)
            .max()
            .unwrap_or(0)
    }

    fn add_pair(&mut self, via: Via, remote: Candidate) {
        let key = (via, remote.addr);
        if self.pairs.contains_key(&key)
            || self.pairs.len() >= MAX_PAIRS
            || via_family_mismatch(via, remote.addr)
        {
            return;
        }
        let local = u64::from(self.local_priority(via));
        let remote_priority = u64::from(remote.priority);
        let (g, d) = match self.config.role {
            Role::Controlling => (local, remote_priority),
            Role::Controlled => (remote_priority, local),
        };
        // RFC 8445 §6.1.2.3.
        let priority = (g.min(d) << 32) + 2 * g.max(d) + u64::from(g > d);
        self.pairs.insert(
            key,
            Pair {
                remote_kind: remote.kind,
                priority,
                state: PairState::Waiting,
                check: None,
                last_response: None,
                last_media: None,
                steady_media: false,
                next_keepalive: None,
                failed_at: None,
            },
        );
    }

    fn path_pair(&self, key: PairKey) -> Option<PathPair> {
        self.pairs.get(&key).map(|p| PathPair {
            via: key.0,
            remote: key.1,
            remote_kind: p.remote_kind,
        })
    }

    fn dead_after(&self, key: PairKey) -> Duration {
        if self.selected == Some(key) {
            self.config.dead_after
        } else {
            self.config.keepalive_interval * 2 + self.config.dead_after
        }
    }

    fn handle_on(&mut self, now: Instant, via: Via, from: SocketAddr, payload: &[u8]) {
        if self.failed {
            return;
        }
        let Ok(decoded) = decode(payload) else {
            return;
        };
        // RFC 8445 §7.2.2: checks and their answers carry FINGERPRINT.
        if !decoded.has_fingerprint() || decoded.message().method() != methods::BINDING {
            return;
        }
        match decoded.message().class() {
            MessageClass::Request => {
                let expected = format!("{}:{}", self.config.local.ufrag, self.config.remote.ufrag);
                let username_ok = decoded
                    .message()
                    .get_attribute::<Username>()
                    .is_some_and(|u| u.name() == expected);
                let key = IntegrityKey::short_term(&self.config.local.pwd);
                if username_ok && decoded.verify_integrity(&key).is_ok() {
                    self.handle_request(now, via, from, decoded.message());
                }
            }
            MessageClass::SuccessResponse => {
                let key = IntegrityKey::short_term(&self.config.remote.pwd);
                if decoded.verify_integrity(&key).is_ok() {
                    self.handle_response(now, via, from, decoded.message());
                }
            }
            _ => {}
        }
        self.update_selection(now);
    }

    fn handle_request(&mut self, now: Instant, via: Via, from: SocketAddr, request: &Message) {
        self.resolve_role_conflict(request);
        let mut response = Message::new(
            MessageClass::SuccessResponse,
            methods::BINDING,
            request.transaction_id(),
        );
        response.add_attribute(XorMappedAddress::new(from));
        if let Ok(payload) = encode(
            response,
            Some(&IntegrityKey::short_term(&self.config.local.pwd)),
            true,
        ) {
            self.push_transmit(via, from, payload);
        }

        let key = (via, from);
        if !self.pairs.contains_key(&key) {
            if !self.remote_candidates.iter().any(|c| c.addr == from)
                && self.remote_candidates.len() < MAX_REMOTE_CANDIDATES
            {
                let priority = request
                    .get_attribute::<Priority>()
                    .map(Priority::prio)
                    .unwrap_or(0);
                self.remote_candidates.push(Candidate {
                    kind: CandidateKind::PeerReflexive,
                    addr: from,
                    priority,
                });
            }
            let remote = self
                .remote_candidates
                .iter()
                .find(|c| c.addr == from)
                .copied()
                .unwrap_or(Candidate::new(CandidateKind::PeerReflexive, from, 0));
            self.add_pair(via, remote);
        }
        if let Some(pair) = self.pairs.get_mut(&key)
            && matches!(pair.state, PairState::Waiting | PairState::Failed)
        {
            // Triggered check (RFC 8445 §7.3.1.4): our answer just opened this path.
            pair.state = PairState::Waiting;
            pair.failed_at = None;
            if !self.triggered.contains(&key) && self.triggered.len() < MAX_QUEUED {
                self.triggered.push_front(key);
            }
        }
        if self.config.role == Role::Controlled && request.get_attribute::<UseCandidate>().is_some()
        {
            let value = request
                .get_attribute::<Nomination>()
                .map(|n| n.value())
                .unwrap_or(0);
            if self.nominated.is_none_or(|(_, latest)| value >= latest) {
                self.nominated = Some((key, value));
            }
        }
        let _ = now;
    }

    fn resolve_role_conflict(&mut self, request: &Message) {
        // RFC 8445 §7.3.1.1, without the 487 round trip: both sides reach the same verdict.
        let ours = self.config.tie_breaker;
        match self.config.role {
            Role::Controlling => {
                if let Some(theirs) = request.get_attribute::<IceControlling>()
                    && theirs.prio() > ours
                {
                    self.config.role = Role::Controlled;
                    self.nominating = None;
                }
            }
            Role::Controlled => {
                if let Some(theirs) = request.get_attribute::<IceControlled>()
                    && theirs.prio() < ours
                {
                    self.config.role = Role::Controlling;
                }
            }
        }
    }

    fn handle_response(&mut self, now: Instant, via: Via, from: SocketAddr, response: &Message) {
        let id = response.transaction_id();
        let Some((&key, _)) = self
            .pairs
            .iter()
            .find(|(_, p)| p.check.as_ref().is_some_and(|c| c.id == id))
        else {
            return;
        };
        // RFC 8445 §7.2.5.2.1: the answer must come back on the path the check took.
        if key != (via, from) {
            return;
        }
        let keepalive = self.config.keepalive_interval;
        let consent = self.config.consent_interval;
        let selected = self.selected;
        let Some(pair) = self.pairs.get_mut(&key) else {
            return;
        };
        let nomination = pair.check.take().and_then(|c| c.nomination);
        pair.state = PairState::Succeeded;
        pair.last_response = Some(now);
        pair.failed_at = None;
        let interval = if selected == Some(key) || nomination.is_some() {
            consent
        } else {
            keepalive
        };
        pair.next_keepalive = Some(now + interval);
        if self.config.role == Role::Controlling
            && let (Some(n), Some((target, current))) = (nomination, self.nominating)
            && target == key
            && n == current
        {
            self.select(now, key);
        }
    }

    fn select(&mut self, now: Instant, key: PairKey) {
        if self.selected == Some(key) {
            return;
        }
        let first = self.selected.is_none();
        self.selected = Some(key);
        self.revalidate_since = None;
        let consent_at = now + self.config.consent_interval;
        if let Some(pair) = self.pairs.get_mut(&key)
            && pair.check.is_none()
        {
            pair.next_keepalive = Some(
                pair.next_keepalive
                    .map_or(consent_at, |t| t.min(consent_at)),
            );
        }
        if let Some(pair) = self.path_pair(key) {
            self.events.push_back(if first {
                PunchEvent::Connected { pair }
            } else {
                PunchEvent::PathChanged { pair }
            });
        }
    }

    fn options(&self, now: Instant) -> Vec<PathOption<PairKey>> {
        self.pairs
            .iter()
            .map(|(&key, pair)| PathOption {
                id: key,
                kind: self.path_pair(key).map_or(PathKind::Relay, |p| p.kind()),
                priority: pair.priority,
                alive: pair.state == PairState::Succeeded
                    && pair.last_response.is_some_and(|t| {
                        now.saturating_duration_since(t) < self.dead_after(key)
                            && self.revalidate_since.is_none_or(|since| t >= since)
                    }),
            })
            .collect()
    }

    fn update_selection(&mut self, now: Instant) {
        if self.failed {
            return;
        }
        let options = self.options(now);
        let alive = |key: PairKey| options.iter().any(|o| o.id == key && o.alive);
        match self.config.role {
            Role::Controlling => {
                let current = self.nominating.map(|(k, _)| k).or(self.selected);
                let Some(desired) = select_path(current, &options) else {
                    return;
                };
                if self.selected == Some(desired) {
                    self.nominating = None;
                    return;
                }
                if self.nominating.is_some_and(|(k, _)| k == desired) {
                    return;
                }
                self.nomination_counter += 1;
                let counter = self.nomination_counter;
                self.nominating = Some((desired, counter));
                self.send_check(now, desired, Some(counter));
            }
            Role::Controlled => {
                if let Some((key, _)) = self.nominated
                    && alive(key)
                {
                    self.select(now, key);
                    return;
                }
                // The selected pair died and no newer nomination works: follow the policy
                // until the controlling side renominates.
                if let Some(selected) = self.selected
                    && !alive(selected)
                    && let Some(fallback) = select_path(None, &options)
                {
                    self.select(now, fallback);
                }
            }
        }
    }

    fn start_next_check(&mut self, now: Instant) -> bool {
        while let Some(key) = self.triggered.pop_front() {
            if self.pairs.get(&key).is_some_and(|p| p.check.is_none()) {
                self.send_check(now, key, None);
                return true;
            }
        }
        let next = self
            .pairs
            .iter()
            .filter(|(_, p)| p.state == PairState::Waiting && p.check.is_none())
            .max_by_key(|(_, p)| p.priority)
            .map(|(&k, _)| k);
        match next {
            Some(key) => {
                self.send_check(now, key, None);
                true
            }
            None => false,
        }
    }

    fn send_check(&mut self, now: Instant, key: PairKey, nomination: Option<u32>) {
        let id = crate::stun::new_transaction_id(&mut self.rng);
        let mut request = binding_request(id);
        let username = format!("{}:{}", self.config.remote.ufrag, self.config.local.ufrag);
        let Ok(username) = Username::new(username) else {
            return;
        };
        request.add_attribute(username);
        let prflx_priority = Candidate::new(CandidateKind::PeerReflexive, key.1, 65535).priority;
        request.add_attribute(Priority::new(prflx_priority));
        match self.config.role {
            Role::Controlling => {
                request.add_attribute(IceControlling::new(self.config.tie_breaker))
            }
            Role::Controlled => request.add_attribute(IceControlled::new(self.config.tie_breaker)),
        }
        if let Some(value) = nomination {
            request.add_attribute(UseCandidate::new());
            request.add_attribute(Nomination::new(value));
        }
        let Ok(payload) = encode(
            request,
            Some(&IntegrityKey::short_term(&self.config.remote.pwd)),
            true,
        ) else {
            return;
        };
        let rto = self.config.check_rto;
        let Some(pair) = self.pairs.get_mut(&key) else {
            return;
        };
        if pair.state != PairState::Succeeded {
            pair.state = PairState::InProgress;
        }
        pair.next_keepalive = None;
        pair.check = Some(Check {
            id,
            payload: payload.clone(),
            transmissions: 1,
            rto,
            next_retransmit: now + rto,
            nomination,
        });
        self.push_transmit(key.0, key.1, payload);
    }

    fn retransmit(&mut self, now: Instant) {
        let max_rto = self.config.max_check_rto;
        let max_transmissions = self.config.check_transmissions;
        let keepalive = self.config.keepalive_interval;
        let mut resend = Vec::new();
        let mut abandoned_nomination = false;
        for (key, pair) in self.pairs.iter_mut() {
            let Some(check) = pair.check.as_mut() else {
                continue;
            };
            if check.next_retransmit > now {
                continue;
            }
            if check.transmissions < max_transmissions {
                check.transmissions += 1;
                check.rto = (check.rto * 2).min(max_rto);
                check.next_retransmit = now + check.rto;
                resend.push((*key, check.payload.clone()));
            } else {
                if check.nomination.is_some() {
                    abandoned_nomination = true;
                }
                pair.check = None;
                if pair.state == PairState::Succeeded {
                    // A lost keep-alive: try again later; `detect_dead` judges the silence.
                    pair.next_keepalive = Some(now + keepalive.min(Duration::from_secs(1)));
                } else {
                    pair.state = PairState::Failed;
                    pair.failed_at = Some(now);
                }
            }
        }
        if abandoned_nomination {
            self.nominating = None;
        }
        for ((via, to), payload) in resend {
            self.push_transmit(via, to, payload);
        }
    }

    fn keep_alive(&mut self, now: Instant) {
        let due: Vec<PairKey> = self
            .pairs
            .iter()
            .filter(|(_, p)| p.check.is_none() && p.next_keepalive.is_some_and(|t| t <= now))
            .map(|(&k, _)| k)
            .collect();
        for key in due {
            self.send_check(now, key, None);
        }
    }

    fn detect_dead(&mut self, now: Instant) {
        let mut died = Vec::new();
        for (&key, pair) in &self.pairs {
            if pair.state == PairState::Succeeded
                && pair
                    .last_response
                    .is_some_and(|t| now.saturating_duration_since(t) >= self.dead_after(key))
            {
                died.push(key);
            }
        }
        for key in died {
            if let Some(pair) = self.pairs.get_mut(&key) {
                pair.state = PairState::Failed;
                pair.failed_at = Some(now);
                pair.check = None;
                pair.next_keepalive = None;
            }
            if self.nominating.is_some_and(|(k, _)| k == key) {
                self.nominating = None;
            }
        }
        let selected_dead = self.selected.is_some_and(|k| {
            self.pairs
                .get(&k)
                .is_some_and(|p| p.state == PairState::Failed)
        });
        if !selected_dead {
            return;
        }
        match self.revalidate_since {
            None => {
                // Probe every other working pair now rather than trust old answers.
                self.revalidate_since = Some(now);
                let working: Vec<PairKey> = self
                    .pairs
                    .iter()
                    .filter(|(_, p)| p.state == PairState::Succeeded && p.check.is_none())
                    .map(|(&k, _)| k)
                    .collect();
                for key in working {
                    self.send_check(now, key, None);
                }
            }
            Some(since) if now.saturating_duration_since(since) >= self.config.dead_after => {
                for pair in self.pairs.values_mut() {
                    if pair.state == PairState::Succeeded
                        && pair.last_response.is_none_or(|t| t < since)
                    {
                        pair.state = PairState::Failed;
                        pair.failed_at = Some(now);
                        pair.check = None;
                        pair.next_keepalive = None;
                    }
                }
            }
            Some(_) => {}
        }
        if !self.pairs.values().any(|p| p.state == PairState::Succeeded) {
            self.fail(FailReason::AllPathsDead);
        }
    }

    fn recheck(&mut self, now: Instant) {
        let on_relay = self
            .selected_pair()
            .is_none_or(|p| p.kind() == PathKind::Relay);
        if !on_relay {
            return;
        }
        let interval = self.config.recheck_interval;
        for pair in self.pairs.values_mut() {
            if pair.state == PairState::Failed
                && pair
                    .failed_at
                    .is_some_and(|t| now.saturating_duration_since(t) >= interval)
            {
                pair.state = PairState::Waiting;
                pair.failed_at = None;
            }
        }
    }

    fn fail(&mut self, reason: FailReason) {
        if !self.failed {
            self.failed = true;
            self.events.push_back(PunchEvent::Failed { reason });
        }
    }

    fn push_transmit(&mut self, via: Via, destination: SocketAddr, payload: Vec<u8>) {
        if self.transmits.len() < MAX_QUEUED {
            self.transmits.push_back(Transmit {
                via,
                destination,
                payload,
            });
        }
    }
}

fn via_family_mismatch(via: Via, remote: SocketAddr) -> bool {
    match via {
        Via::Direct => false,
        Via::Relay { relayed } => relayed.is_ipv4() != remote.is_ipv4(),
    }
}
