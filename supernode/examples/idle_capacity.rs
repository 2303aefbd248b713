//! How many idle clients one supernode process holds: starts the real `supernode` binary,
//! homes N clients over QUIC (each with its own credential, sending application pings at the
//! client's keep-alive interval on top of QUIC's own keep-alives), then measures the
//! supernode's CPU share and resident memory over a steady window. Prints a Markdown table
//! with a zero-client baseline measured in the same run.
//!
//! With `--park-after-secs N` (N > 0) every client is driven by the real
//! `client_core::Homing` over a small shell of its own (one QUIC link while live, park
//! datagrams on the shared client sockets routed by token): the supernode offers parking
//! after N idle seconds, the clients accept, their connections close and they heartbeat
//! at `--ping-secs`; the window measures parked clients. N = 0 measures live connections
//! with hand-written pings, as before parking existed.
//!
//! ```text
//! cargo build --release -p supernode --bin supernode --example idle_capacity
//! target/release/examples/idle_capacity --clients 10000 --window-secs 30 --ping-secs 25 --quic-keepalive-secs 25 --park-after-secs 5
//! ```
//!
//! `--supernode-bin` measures another build the same way (a before/after pair); figures and
//! the memory breakdown are in docs/bench/supernode.md.

use clap::Parser;
use client_core::{Homing, HomingConfig, HomingEvent, HostCache};
use proto::park::ParkToken;
use proto::supernode::{
    ClientToSupernode, Presence, PresenceStatus, SupernodeContact, SupernodeToClient,
};
use proto::{Credential, DisplayName, SecretKey, SignedCredential, UnixTime, UserName};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;
use transport::RawUdp;
use transport::{Endpoint, PeerPolicy, Tuning};

#[derive(Debug, Parser)]
struct Args {
    /// Idle clients to home.
    #[arg(long, default_value_t = 10_000)]
    clients: usize,
    /// Steady-state measurement window.
    #[arg(long, default_value_t = 30)]
    window_secs: u64,
    /// Application keep-alive interval of each client (client-core's default is 6 s); 0 sends
    /// none (QUIC's keep-alive alone), which holds only for windows shorter than the core's
    /// 55 s session timeout: past it the supernode drops the silent clients.
    #[arg(long, default_value_t = 6)]
    ping_secs: u64,
    /// QUIC keep-alive of each client (transport::Tuning::client() uses 3 s, idle timeout 9 s).
    #[arg(long, default_value_t = 3)]
    quic_keepalive_secs: u64,
    /// QUIC idle timeout of each client; default 3 × the keep-alive, at least 9 s.
    #[arg(long)]
    idle_timeout_secs: Option<u64>,
    /// Client connections per client UDP socket.
    #[arg(long, default_value_t = 500)]
    per_socket: usize,
    /// The supernode binary.
    #[arg(long, default_value = "target/release/supernode")]
    supernode_bin: PathBuf,
    #[arg(long, default_value = "127.0.0.1:17500")]
    listen: SocketAddr,
    /// The supernode's `--park-after-secs`; 0: no parking (live connections, hand-written
    /// pings).
    #[arg(long, default_value_t = 0)]
    park_after_secs: u64,
}

type Mailboxes = Arc<std::sync::Mutex<HashMap<ParkToken, mpsc::Sender<Vec<u8>>>>>;

/// Routes the park datagrams arriving on one shared client socket to their client by token.
async fn route_datagrams(raw: Arc<RawUdp>, mailboxes: Mailboxes) {
    while let Some((datagram, _from)) = raw.recv_from().await {
        let Ok(header) = proto::park::decode_header(&datagram) else {
            continue;
        };
        let mailbox = mailboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&header.token)
            .cloned();
        if let Some(mailbox) = mailbox {
            let _ = mailbox.try_send(datagram);
        }
    }
}

/// What one client's link task reports.
enum LinkEvent {
    ParkKey(proto::park::ParkKey),
    Message(SupernodeToClient),
    Ended,
}

/// One QUIC session to the supernode: writes what the client hands it, reports what
/// arrives. Dropping the sender closes it after the queue is written.
fn open_link(
    endpoint: Endpoint,
    to: SupernodeContact,
    tuning: Tuning,
    events: mpsc::Sender<LinkEvent>,
) -> mpsc::Sender<ClientToSupernode> {
    let (tx, mut rx) = mpsc::channel::<ClientToSupernode>(16);
    tokio::spawn(async move {
        // Any failure ends the link; the client's homing hears of it as `Ended`.
        let _ended: Result<(), String> = async {
            let conn = endpoint
                .connect(to.addr, PeerPolicy::Key(to.key), &tuning)
                .await
                .map_err(|e| e.to_string())?;
            if let Some(key) = conn.export_keying_material(proto::park::PARK_EXPORTER_LABEL) {
                let key = proto::park::ParkKey::from_exporter(key);
                events
                    .send(LinkEvent::ParkKey(key))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
            let reader = async {
                loop {
                    let mut header = [0u8; 4];
                    if recv.read_exact(&mut header).await.is_err() {
                        return;
                    }
                    let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
                    if recv.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    if let Ok(message) = SupernodeToClient::decode(&body)
                        && events.send(LinkEvent::Message(message)).await.is_err()
                    {
                        return;
                    }
                }
            };
            let writer = async {
                while let Some(message) = rx.recv().await {
                    let Ok(frame) = message.encode_frame() else {
                        continue;
                    };
                    if send.write_all(&frame).await.is_err() {
                        return;
                    }
                }
                let _ = send.shutdown().await;
            };
            tokio::pin!(reader);
            tokio::select! {
                () = &mut reader => {}
                () = writer => {
                    let _ = tokio::time::timeout(Duration::from_millis(300), &mut reader).await;
                }
            }
            conn.close(0, "done");
            Ok(())
        }
        .await;
        let _ = events.send(LinkEvent::Ended).await;
    });
    tx
}

/// What one parking client shares with the others on its socket.
struct Shared {
    endpoint: Endpoint,
    raw: Arc<RawUdp>,
    mailboxes: Mailboxes,
    /// Clients parked now, over all sockets.
    parked: Arc<AtomicU64>,
    /// Handshakes in flight, over all sockets.
    limiter: Arc<tokio::sync::Semaphore>,
}

/// One client driven by `client_core::Homing`: homes, parks when offered, heartbeats.
/// Returns when homing gives up (refused) or the link fails for good.
async fn parking_client(
    shared: Arc<Shared>,
    supernode: SupernodeContact,
    credential: SignedCredential,
    config: HomingConfig,
    tuning: Tuning,
    homed: Arc<AtomicU64>,
) -> Result<(), String> {
    let parked = shared.parked.clone();
    let limiter = shared.limiter.clone();
    let mut permit = Some(limiter.acquire_owned().await.map_err(|e| e.to_string())?);
    let mut cache = HostCache::new();
    cache.insert(supernode);
    let mut homing = Homing::new(
        config,
        credential,
        Presence::new(PresenceStatus::Online),
        cache,
        rand::random(),
        Instant::now(),
    );
    let (events_tx, mut events_rx) = mpsc::channel(16);
    let (mail_tx, mut mail_rx) = mpsc::channel(4);
    let mut link: Option<mpsc::Sender<ClientToSupernode>> = None;
    let mut registered: Option<ParkToken> = None;
    let mut was_homed = false;
    let mut was_parked = false;
    loop {
        while let Some(transmit) = homing.poll_transmit() {
            let sender = link.get_or_insert_with(|| {
                open_link(
                    shared.endpoint.clone(),
                    transmit.to,
                    tuning.clone(),
                    events_tx.clone(),
                )
            });
            let _ = sender.try_send(transmit.message);
        }
        while let Some(event) = homing.poll_event() {
            match event {
                HomingEvent::Homed { .. } if !was_homed => {
                    was_homed = true;
                    homed.fetch_add(1, Ordering::Relaxed);
                    permit = None;
                }
                HomingEvent::Disconnect { .. } => link = None,
                HomingEvent::Refused { error } => return Err(error.to_string()),
                HomingEvent::Lost { .. } => return Err("lost the supernode".into()),
                _ => {}
            }
        }
        while let Some((to, datagram)) = homing.poll_datagram() {
            let _ = shared.raw.try_send_to(&datagram, to);
        }
        let token = homing.park_token();
        if token != registered {
            let mut mailboxes = shared.mailboxes.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(old) = registered.take() {
                mailboxes.remove(&old);
            }
            if let Some(token) = token {
                mailboxes.insert(token, mail_tx.clone());
            }
            registered = token;
        }
        if homing.is_parked() != was_parked {
            was_parked = homing.is_parked();
            if was_parked {
                parked.fetch_add(1, Ordering::Relaxed);
            } else {
                parked.fetch_sub(1, Ordering::Relaxed);
            }
        }
        drop(permit.take_if(|_| was_homed));
        let deadline = homing
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(60));
        tokio::select! {
            Some(event) = events_rx.recv() => {
                let now = Instant::now();
                match event {
                    LinkEvent::ParkKey(key) => homing.handle_park_key(supernode.key, key),
                    LinkEvent::Message(message) => homing.handle_message(now, supernode.key, message),
                    LinkEvent::Ended => {
                        // Only the current link's end counts (a parked one's is expected).
                        if link.is_some() {
                            link = None;
                            homing.handle_connection_failed(now, supernode.key);
                        }
                    }
                }
            }
            Some(datagram) = mail_rx.recv() => {
                homing.handle_datagram(Instant::now(), supernode.addr, &datagram);
            }
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                homing.handle_timeout(Instant::now());
            }
        }
    }
}

fn clock_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn resident_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// CPU share of one core and RSS of `pid` over `window`.
async fn measure(pid: u32, window: Duration) -> (f64, f64) {
    // Linux reports in USER_HZ, 100 on every mainstream architecture.
    const TICKS_PER_SEC: f64 = 100.0;
    let before = clock_ticks(pid).unwrap_or(0);
    let start = Instant::now();
    tokio::time::sleep(window).await;
    let after = clock_ticks(pid).unwrap_or(0);
    let cpu = (after - before) as f64 / TICKS_PER_SEC / start.elapsed().as_secs_f64();
    (cpu * 100.0, resident_mib(pid).unwrap_or(0.0))
}

struct Supernode(Child);

impl Drop for Supernode {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let authority = SecretKey::generate();
    let supernode_key_dir = tempfile::tempdir()?;
    let mut child = Command::new(&args.supernode_bin)
        .args([
            "--login-server",
            "127.0.0.1:9",
            &format!("--authority-key={}", authority.public()),
            "--listen",
            &args.listen.to_string(),
            "--turn-listen",
            "127.0.0.1:0",
            "--tcp-listen",
            "127.0.0.1:0",
            "--max-clients",
            &(args.clients + 100).to_string(),
            "--park-after-secs",
            &args.park_after_secs.to_string(),
            "--data-dir",
        ])
        .arg(supernode_key_dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(
            supernode_key_dir.path().join("stderr.log"),
        )?)
        .spawn()?;
    let pid = child.id();
    let key_path = supernode_key_dir.path().join("supernode.key");
    let started = Instant::now();
    while !key_path.exists() && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let Some(status) = child.try_wait()? {
        let log = std::fs::read_to_string(supernode_key_dir.path().join("stderr.log"))?;
        anyhow::bail!("supernode exited: {status}: {log}");
    }
    let supernode_key = transport::load_secret_key(&key_path)?.public();
    let guard = Supernode(child);

    let baseline = measure(pid, Duration::from_secs(args.window_secs.min(10))).await;

    let device = SecretKey::generate();
    let now = UnixTime::from_system(SystemTime::now());
    let sockets = args.clients.div_ceil(args.per_socket).max(1);
    let mut endpoints = Vec::new();
    let mut shared = Vec::new();
    let parked = Arc::new(AtomicU64::new(0));
    let limiter = Arc::new(tokio::sync::Semaphore::new(200));
    for _ in 0..sockets {
        let (endpoint, raw) = Endpoint::bind_with_raw("127.0.0.1:0".parse()?, &device, None)?;
        let raw = Arc::new(raw);
        let mailboxes: Mailboxes = Arc::default();
        tokio::spawn(route_datagrams(raw.clone(), mailboxes.clone()));
        endpoints.push(endpoint.clone());
        shared.push(Arc::new(Shared {
            endpoint,
            raw,
            mailboxes,
            parked: parked.clone(),
            limiter: limiter.clone(),
        }));
    }
    let supernode = SupernodeContact {
        key: supernode_key,
        addr: args.listen,
    };
    let homed = Arc::new(AtomicU64::new(0));
    let pongs = Arc::new(AtomicU64::new(0));
    let ramp = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..args.clients {
        let endpoint = endpoints[i % sockets].clone();
        let credential = SignedCredential::issue(
            &Credential {
                serial: i as u64,
                user: UserName::new(format!("idle{i:06}"))?,
                display_name: DisplayName::new(format!("Idle {i}"))?,
                device_key: device.public(),
                issued_at: now,
                expires_at: now.saturating_add(Duration::from_secs(3600)),
            },
            &authority,
        );
        let (homed, pongs, limiter) = (homed.clone(), pongs.clone(), limiter.clone());
        let (addr, ping) = (args.listen, Duration::from_secs(args.ping_secs));
        let keepalive = Duration::from_secs(args.quic_keepalive_secs.max(1));
        let tuning = Tuning {
            keep_alive_interval: Some(keepalive),
            // Three keep-alives may go missing before the connection is declared dead.
            idle_timeout: args
                .idle_timeout_secs
                .map(Duration::from_secs)
                .unwrap_or((keepalive * 3).max(Duration::from_secs(9))),
            ..Tuning::client()
        };
        if args.park_after_secs > 0 {
            let config = HomingConfig {
                keepalive_interval: ping,
                dead_after: ping * 2 + Duration::from_secs(10),
                probe_fanout: 1,
                probe_timeout: Duration::from_secs(30),
                connect_timeout: Duration::from_secs(30),
                ..HomingConfig::default()
            };
            tasks.push(tokio::spawn(parking_client(
                shared[i % sockets].clone(),
                supernode,
                credential,
                config,
                tuning,
                homed,
            )));
            continue;
        }
        tasks.push(tokio::spawn(async move {
            let permit = limiter.acquire_owned().await;
            let conn = endpoint
                .connect(addr, PeerPolicy::Key(supernode_key), &tuning)
                .await
                .map_err(|e| e.to_string())?;
            let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
            let hello = ClientToSupernode::Hello {
                version: proto::PROTOCOL_VERSION,
                credential,
                presence: Presence::new(PresenceStatus::Online),
            };
            send.write_all(&hello.encode_frame().map_err(|e| e.to_string())?)
                .await
                .map_err(|e| e.to_string())?;
            let mut read = async || -> Result<SupernodeToClient, String> {
                let mut header = [0u8; 4];
                recv.read_exact(&mut header)
                    .await
                    .map_err(|e| e.to_string())?;
                let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
                recv.read_exact(&mut body)
                    .await
                    .map_err(|e| e.to_string())?;
                SupernodeToClient::decode(&body).map_err(|e| e.to_string())
            };
            match read().await? {
                SupernodeToClient::Welcome { .. } => {}
                other => return Err(format!("not welcomed: {other:?}")),
            }
            homed.fetch_add(1, Ordering::Relaxed);
            drop(permit);
            if ping.is_zero() {
                // Hold the connection (QUIC keep-alives only) until the benchmark ends or
                // the connection dies.
                let error = conn.closed().await;
                return Err(error.to_string());
            }
            let mut nonce = 0u64;
            loop {
                tokio::time::sleep(ping).await;
                nonce += 1;
                let frame = ClientToSupernode::Ping { nonce }
                    .encode_frame()
                    .map_err(|e| e.to_string())?;
                send.write_all(&frame).await.map_err(|e| e.to_string())?;
                if let SupernodeToClient::Pong { .. } = read().await? {
                    pongs.fetch_add(1, Ordering::Relaxed);
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), String>(())
        }));
    }
    // Clients whose connection drops (a loaded machine can stall a handshake past its
    // timeout) are counted, not retried: the figure is what stays homed.
    let failed = |tasks: &[tokio::task::JoinHandle<Result<(), String>>]| {
        tasks.iter().filter(|t| t.is_finished()).count()
    };
    while (homed.load(Ordering::Relaxed) as usize + failed(&tasks)) < args.clients
        && ramp.elapsed() < Duration::from_secs(600)
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ramp_secs = ramp.elapsed().as_secs_f64();
    // Let the ramp-up's handshakes settle (and the clients park) before measuring the idle
    // steady state.
    tokio::time::sleep(Duration::from_secs(5 + args.park_after_secs)).await;
    if args.park_after_secs > 0 {
        let wait = Instant::now();
        while (parked.load(Ordering::Relaxed) as usize) + failed(&tasks) < args.clients
            && wait.elapsed() < Duration::from_secs(60)
        {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let parked_before = parked.load(Ordering::Relaxed);
    let pongs_before = pongs.load(Ordering::Relaxed);
    let (cpu, rss) = measure(pid, Duration::from_secs(args.window_secs)).await;
    let pongs_per_sec =
        (pongs.load(Ordering::Relaxed) - pongs_before) as f64 / args.window_secs as f64;
    let lost = failed(&tasks);
    let homed_now = (homed.load(Ordering::Relaxed) as usize).saturating_sub(lost);
    let per_client_kib = (rss - baseline.1) * 1024.0 / homed_now.max(1) as f64;
    println!(
        "| clients homed | lost | QUIC keep-alive s | app ping s | supernode CPU (% of one core) | supernode RSS (MiB) | KiB per client |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| 0 (baseline) | 0 | - | - | {:.2} | {:.1} | - |",
        baseline.0, baseline.1
    );
    println!(
        "| {homed_now} | {lost} | {} | {} | {cpu:.2} | {rss:.1} | {per_client_kib:.1} |",
        args.quic_keepalive_secs,
        if args.ping_secs == 0 {
            "-".to_owned()
        } else {
            args.ping_secs.to_string()
        }
    );
    println!(
        "\nramp-up {ramp_secs:.1} s; {pongs_per_sec:.0} pongs/s in the window; parked {parked_before} at its start, {} at its end",
        parked.load(Ordering::Relaxed)
    );
    drop(guard);
    Ok(())
}
