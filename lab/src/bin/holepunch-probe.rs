//! `holepunch-probe`: runs the product's ICE-like core `nat::holepunch` over one real UDP
//! socket, with signalling through stdin/stdout, so tests can punch between two lab hosts.
//!
//! 1. Binds a socket, learns its server-reflexive address with a STUN Binding to
//!    `--stun ADDR` (skipped when no answer comes), prints one JSON line
//!    `{"credentials":…,"candidates":[…]}` (its offer).
//! 2. Reads one JSON line `{"role":"controlling"|"controlled","credentials":…,
//!    "candidates":[…]}` (the peer's offer and our role) on stdin.
//! 3. Punches; prints `{"result":"connected","remote":ADDR,"remote_kind":…,"elapsed_ms":N}`
//!    or `{"result":"failed","reason":…,"elapsed_ms":N}`, keeps answering the peer's checks
//!    (and printing path changes) for `--linger-ms` (default 1000) after the first result
//!    so the peer can finish too, and exits 0.
//!
//! With `--turn ADDR --turn-username U --turn-password P` it also allocates on that TURN
//! server (`nat::turn::client`) and offers the relayed address as a candidate; checks over
//! relayed pairs go through the allocation. Every selection is printed as
//! `{"result":"connected"|"path_changed","path":"direct"|"relay",…}`.
//!
//! Usage: `holepunch-probe --stun ADDR [--connect-timeout-ms N] [--linger-ms N]
//! [--turn ADDR --turn-username U --turn-password P]`

use std::io::BufRead;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nat::Via;
use nat::holepunch::{Candidate, HolePunch, HolePunchConfig, IceCredentials, PunchEvent, Role};
use nat::path::PathKind;
use nat::stun::attributes::XorMappedAddress;
use nat::stun::{MessageClass, binding_request, decode, encode, new_transaction_id};
use nat::turn::client::{ClientConfig, ClientEvent, TurnClient};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Offer {
    credentials: IceCredentials,
    candidates: Vec<Candidate>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RoleName {
    Controlling,
    Controlled,
}

#[derive(Debug, Deserialize)]
struct Answer {
    role: RoleName,
    credentials: IceCredentials,
    candidates: Vec<Candidate>,
}

struct Args {
    stun: SocketAddr,
    connect_timeout: Option<Duration>,
    linger: Duration,
    turn: Option<ClientConfig>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut stun = None;
    let mut connect_timeout = None;
    let mut linger = Duration::from_secs(1);
    let mut turn_server: Option<SocketAddr> = None;
    let mut turn_username = None;
    let mut turn_password = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let bad = || format!("{flag}: bad value {value:?}");
        match flag.as_str() {
            "--stun" => stun = Some(value.parse().with_context(bad)?),
            "--connect-timeout-ms" => {
                connect_timeout = Some(Duration::from_millis(value.parse().with_context(bad)?));
            }
            "--linger-ms" => linger = Duration::from_millis(value.parse().with_context(bad)?),
            "--turn" => turn_server = Some(value.parse().with_context(bad)?),
            "--turn-username" => turn_username = Some(value),
            "--turn-password" => turn_password = Some(value),
            other => bail!("unknown flag {other}"),
        }
    }
    let turn = match (turn_server, turn_username, turn_password) {
        (None, None, None) => None,
        (Some(server), Some(username), Some(password)) => {
            Some(ClientConfig::new(server, username, password))
        }
        _ => bail!("--turn, --turn-username and --turn-password go together"),
    };
    Ok(Args {
        stun: stun.context("--stun ADDR is required")?,
        connect_timeout,
        linger,
        turn,
    })
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!(
                "holepunch-probe: {e:#}\nusage: holepunch-probe --stun ADDR \
                 [--connect-timeout-ms N] [--linger-ms N]"
            );
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&args) {
        eprintln!("holepunch-probe: {e:#}");
        std::process::exit(1);
    }
}

/// One Binding transaction, retransmitted every 300 ms up to 8 times.
fn server_reflexive(socket: &UdpSocket, server: SocketAddr) -> anyhow::Result<Option<SocketAddr>> {
    let id = new_transaction_id(&mut rand::rng());
    let request = encode(binding_request(id), None, true).context("encoding a Binding")?;
    let mut buf = [0u8; 1500];
    for _ in 0..8 {
        let _ = socket.send_to(&request, server);
        let deadline = Instant::now() + Duration::from_millis(300);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            socket.set_read_timeout(Some(left))?;
            let Ok((len, from)) = socket.recv_from(&mut buf) else {
                break;
            };
            if from != server {
                continue;
            }
            let Ok(decoded) = decode(&buf[..len]) else {
                continue;
            };
            let message = decoded.message();
            if message.transaction_id() == id && message.class() == MessageClass::SuccessResponse {
                return Ok(message
                    .get_attribute::<XorMappedAddress>()
                    .map(XorMappedAddress::address));
            }
        }
    }
    Ok(None)
}

/// Allocates on the TURN server, serving only TURN traffic meanwhile (nothing else is
/// expected before the offer is out).
fn allocate(socket: &UdpSocket, turn: &mut TurnClient) -> anyhow::Result<SocketAddr> {
    let started = Instant::now();
    turn.allocate(started).context("starting the allocation")?;
    let mut buf = [0u8; 1500];
    loop {
        while let Some(transmit) = turn.poll_transmit() {
            let _ = socket.send_to(&transmit.payload, transmit.destination);
        }
        while let Some(event) = turn.poll_event() {
            match event {
                ClientEvent::Allocated { relayed, .. } => return Ok(relayed),
                ClientEvent::AllocationFailed(error) => bail!("TURN allocation failed: {error}"),
                _ => {}
            }
        }
        let now = Instant::now();
        if now.duration_since(started) > Duration::from_secs(30) {
            bail!("TURN allocation did not finish in 30 s");
        }
        let due = turn
            .poll_timeout()
            .unwrap_or(now + Duration::from_millis(100));
        if due <= now {
            turn.handle_timeout(now);
            continue;
        }
        socket.set_read_timeout(Some(due - now))?;
        if let Ok((len, from)) = socket.recv_from(&mut buf) {
            turn.handle_datagram(Instant::now(), from, &buf[..len]);
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let socket = UdpSocket::bind("0.0.0.0:0").context("binding")?;
    let local = socket.local_addr()?;
    let host_ip = lab::netcheck::route_source(args.stun)?;
    let mut candidates = vec![Candidate::host(SocketAddr::new(host_ip, local.port()))];
    if let Some(mapped) = server_reflexive(&socket, args.stun)?
        && mapped != candidates[0].addr
    {
        candidates.push(Candidate::server_reflexive(mapped));
    }
    let mut turn = args
        .turn
        .clone()
        .map(|config| TurnClient::new(config, rand::random()));
    let mut relayed = None;
    if let Some(turn) = turn.as_mut() {
        let addr = allocate(&socket, turn)?;
        relayed = Some(addr);
        candidates.push(Candidate::relayed(addr));
    }
    let credentials = IceCredentials::random(&mut rand::rng());
    let offer = Offer {
        credentials: credentials.clone(),
        candidates: candidates.clone(),
    };
    println!("{}", serde_json::to_string(&offer)?);

    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the answer")?;
    let answer: Answer = serde_json::from_str(&line).context("parsing the answer")?;
    let role = match answer.role {
        RoleName::Controlling => Role::Controlling,
        RoleName::Controlled => Role::Controlled,
    };
    let mut config = HolePunchConfig::new(role, rand::random(), credentials, answer.credentials);
    if let Some(timeout) = args.connect_timeout {
        config.connect_timeout = timeout;
    }
    let started = Instant::now();
    let mut punch = HolePunch::new(config, started, rand::random());
    for candidate in candidates {
        punch.add_local_candidate(candidate);
    }
    for candidate in answer.candidates {
        if let Some(turn) = turn.as_mut() {
            // Relayed checks to this peer need a permission on our allocation; so do the
            // peer's checks arriving at our relayed address.
            turn.create_permission(started, candidate.addr.ip())
                .context("creating a TURN permission")?;
        }
        punch.add_remote_candidate(started, candidate);
    }
    // The core gives up by itself; this only bounds a bug.
    let hard_limit = started + Duration::from_secs(120);
    let mut stop_at: Option<Instant> = None;
    let mut buf = [0u8; 1500];
    loop {
        let now = Instant::now();
        if punch.poll_timeout().is_some_and(|due| due <= now) {
            punch.handle_timeout(now);
        }
        if let Some(turn) = turn.as_mut()
            && turn.poll_timeout().is_some_and(|due| due <= now)
        {
            turn.handle_timeout(now);
        }
        while let Some(transmit) = punch.poll_transmit() {
            match (transmit.via, turn.as_mut()) {
                (Via::Direct, _) => {
                    let _ = socket.send_to(&transmit.payload, transmit.destination);
                }
                (Via::Relay { .. }, Some(turn)) => {
                    // A refused relay send is a lost check; retransmissions cover it.
                    let _ = turn.send_to(transmit.destination, &transmit.payload);
                }
                (Via::Relay { .. }, None) => {}
            }
        }
        if let Some(turn) = turn.as_mut() {
            while let Some(transmit) = turn.poll_transmit() {
                let _ = socket.send_to(&transmit.payload, transmit.destination);
            }
            while let Some(event) = turn.poll_event() {
                if let (ClientEvent::Data { peer, payload }, Some(relayed)) = (event, relayed) {
                    punch.handle_relayed_datagram(Instant::now(), relayed, peer, &payload);
                }
            }
        }
        while let Some(event) = punch.poll_event() {
            let elapsed_ms = started.elapsed().as_millis();
            let path = |kind: PathKind| match kind {
                PathKind::Direct => "direct",
                PathKind::Relay => "relay",
            };
            let report = match event {
                PunchEvent::Connected { pair } => serde_json::json!({
                    "result": "connected",
                    "path": path(pair.kind()),
                    "remote": pair.remote,
                    "remote_kind": pair.remote_kind,
                    "elapsed_ms": elapsed_ms,
                }),
                PunchEvent::PathChanged { pair } => serde_json::json!({
                    "result": "path_changed",
                    "path": path(pair.kind()),
                    "remote": pair.remote,
                    "remote_kind": pair.remote_kind,
                    "elapsed_ms": elapsed_ms,
                }),
                PunchEvent::Failed { reason } => serde_json::json!({
                    "result": "failed",
                    "reason": format!("{reason:?}"),
                    "elapsed_ms": elapsed_ms,
                }),
            };
            println!("{report}");
            if stop_at.is_none() {
                stop_at = Some(Instant::now() + args.linger);
            }
        }
        let now = Instant::now();
        if stop_at.is_some_and(|at| now >= at) || now >= hard_limit {
            return Ok(());
        }
        let mut wake = punch
            .poll_timeout()
            .unwrap_or(now + Duration::from_millis(100));
        if let Some(due) = turn.as_ref().and_then(TurnClient::poll_timeout) {
            wake = wake.min(due);
        }
        if let Some(at) = stop_at {
            wake = wake.min(at);
        }
        let wait = wake
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        socket.set_read_timeout(Some(wait))?;
        if let Ok((len, from)) = socket.recv_from(&mut buf) {
            let consumed = turn
                .as_mut()
                .is_some_and(|turn| turn.handle_datagram(Instant::now(), from, &buf[..len]));
            if !consumed {
                punch.handle_datagram(Instant::now(), from, &buf[..len]);
            }
        }
    }
}
