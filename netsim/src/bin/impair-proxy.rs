//! `impair-proxy`: a UDP proxy that passes traffic through netsim's impairment model, for
//! end-to-end tests of real processes (the kernel here has no netem).
//!
//! Clients send to `--listen`. For each client address the proxy keeps a mapping with its
//! own upstream socket (so the upstream sees one source port per client), forwards
//! client→upstream through one [`Impairment`] (`--impair`) and upstream→client through
//! another (`--impair-return`, default: a perfect link). Mappings are bounded
//! (`--max-clients`) and expire after `--idle-timeout-millis` without traffic either way.
//!
//! stdout: `listening ADDR` as the first line (so tests can bind port 0), and at exit one
//! `stats` line per direction. Logs go to stderr. SIGINT/SIGTERM stop it cleanly (exit 0);
//! packets still in flight are dropped.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use netsim::{Impairment, ImpairmentConfig, ImpairmentStats};
use tokio::net::UdpSocket;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// UDP proxy that impairs traffic (loss, delay, jitter, reordering, duplication, rate).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address clients send to (IP:PORT; port 0 picks one, printed on stdout).
    #[arg(long)]
    listen: SocketAddr,
    /// Address datagrams are forwarded to.
    #[arg(long)]
    upstream: SocketAddr,
    /// Impairment of client→upstream traffic, e.g. `loss=5%,burst=3,delay=40ms,jitter=30ms`.
    /// Keys: loss, burst, ge, delay, jitter, reorder, dup, rate.
    #[arg(long, default_value = "none")]
    impair: ImpairmentConfig,
    /// Impairment of upstream→client traffic (same syntax).
    #[arg(long, default_value = "none")]
    impair_return: ImpairmentConfig,
    /// Seed of the impairment models; the same seed and traffic give the same impairments.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Most client mappings held at once; datagrams from further clients are dropped.
    #[arg(long, default_value_t = 1024)]
    max_clients: usize,
    /// A mapping with no traffic either way and nothing in flight for this long is closed.
    #[arg(long, default_value_t = 60_000)]
    idle_timeout_millis: u64,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Largest UDP payload.
const MAX_DATAGRAM_BYTES: usize = 65_535;
/// Bytes of IPv4 + UDP header, counted by the bottleneck on top of the payload.
const HEADER_BYTES: usize = 28;
/// Datagrams from upstream readers waiting for the main task.
const INBOX_CAPACITY: usize = 1024;

fn main() -> ExitCode {
    let args = Args::parse();
    init_logs(args.log_format);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("impair-proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("impair-proxy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// One client's mapping.
struct Mapping {
    client: SocketAddr,
    upstream: Arc<UdpSocket>,
    forward: Impairment<Vec<u8>>,
    back: Impairment<Vec<u8>>,
    last_active: Instant,
    reader: JoinHandle<()>,
}

impl Mapping {
    fn in_flight(&self) -> bool {
        self.forward.poll_timeout().is_some() || self.back.poll_timeout().is_some()
    }
}

/// Totals per direction, over open and closed mappings.
#[derive(Default)]
struct Totals {
    forward: Totals1,
    back: Totals1,
}

#[derive(Default)]
struct Totals1 {
    offered: u64,
    dropped: u64,
    duplicated: u64,
    reordered: u64,
    delivered: u64,
}

impl Totals1 {
    fn add(&mut self, s: ImpairmentStats) {
        self.offered += s.offered;
        self.dropped += s.dropped;
        self.duplicated += s.duplicated;
        self.reordered += s.reordered;
        self.delivered += s.delivered;
    }

    fn line(&self, direction: &str) -> String {
        format!(
            "stats direction={direction} offered={} dropped={} duplicated={} reordered={} delivered={}",
            self.offered, self.dropped, self.duplicated, self.reordered, self.delivered
        )
    }
}

struct Proxy {
    args: Args,
    listen: Arc<UdpSocket>,
    inbox_tx: mpsc::Sender<(u64, Vec<u8>)>,
    mappings: BTreeMap<u64, Mapping>,
    by_client: BTreeMap<SocketAddr, u64>,
    next_id: u64,
    closed: Totals,
}

async fn run(args: Args) -> anyhow::Result<()> {
    // Handlers first: a SIGTERM right after the `listening` line must not kill us mid-way.
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;

    let listen = UdpSocket::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let local = listen.local_addr().context("reading the bound address")?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening {local}").context("writing to stdout")?;
        stdout.flush().context("writing to stdout")?;
    }
    info!(
        listen = %local,
        upstream = %args.upstream,
        impair = %args.impair,
        impair_return = %args.impair_return,
        seed = args.seed,
        "proxy running"
    );

    let (inbox_tx, mut inbox_rx) = mpsc::channel(INBOX_CAPACITY);
    let mut proxy = Proxy {
        args,
        listen: Arc::new(listen),
        inbox_tx,
        mappings: BTreeMap::new(),
        by_client: BTreeMap::new(),
        next_id: 0,
        closed: Totals::default(),
    };
    let mut buf = vec![0u8; MAX_DATAGRAM_BYTES];
    loop {
        let deadline = proxy.next_deadline();
        let listen = Arc::clone(&proxy.listen);
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            received = listen.recv_from(&mut buf) => match received {
                Ok((len, client)) => proxy.handle_client_datagram(Instant::now(), client, &buf[..len]).await,
                // ICMP errors surface here on some systems; they concern one peer only.
                Err(e) => debug!(error = %e, "receive on the listening socket failed"),
            },
            Some((id, datagram)) = inbox_rx.recv() => {
                proxy.handle_upstream_datagram(Instant::now(), id, datagram);
            }
            () = sleep_until(deadline), if deadline.is_some() => {}
        }
        let now = Instant::now();
        proxy.deliver_due(now).await;
        proxy.close_idle(now);
    }

    let totals = proxy.shutdown();
    println!("{}", totals.forward.line("forward"));
    println!("{}", totals.back.line("return"));
    info!("proxy stopped");
    Ok(())
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
    }
}

impl Proxy {
    fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.args.idle_timeout_millis)
    }

    async fn handle_client_datagram(&mut self, now: Instant, client: SocketAddr, datagram: &[u8]) {
        let id = match self.by_client.get(&client) {
            Some(&id) => id,
            None => match self.open_mapping(now, client).await {
                Some(id) => id,
                None => return,
            },
        };
        if let Some(mapping) = self.mappings.get_mut(&id) {
            mapping.last_active = now;
            mapping.forward.handle_packet(now, datagram.to_vec());
        }
    }

    fn handle_upstream_datagram(&mut self, now: Instant, id: u64, datagram: Vec<u8>) {
        // A datagram from a mapping closed meanwhile is dropped with it.
        if let Some(mapping) = self.mappings.get_mut(&id) {
            mapping.last_active = now;
            mapping.back.handle_packet(now, datagram);
        }
    }

    async fn open_mapping(&mut self, now: Instant, client: SocketAddr) -> Option<u64> {
        if self.mappings.len() >= self.args.max_clients {
            debug!(%client, "mapping table full; datagram dropped");
            return None;
        }
        let bind: SocketAddr = if self.args.upstream.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = match UdpSocket::bind(bind).await {
            Ok(socket) => socket,
            Err(e) => {
                warn!(error = %e, "cannot open an upstream socket; datagram dropped");
                return None;
            }
        };
        // Connected: the kernel then drops datagrams from anyone but the upstream.
        if let Err(e) = socket.connect(self.args.upstream).await {
            warn!(error = %e, "cannot connect the upstream socket; datagram dropped");
            return None;
        }
        let upstream = Arc::new(socket);
        let id = self.next_id;
        self.next_id += 1;
        let reader = tokio::spawn(read_upstream(
            id,
            Arc::clone(&upstream),
            self.inbox_tx.clone(),
        ));
        let size_with_headers = |p: &Vec<u8>| p.len() + HEADER_BYTES;
        let forward = Impairment::new(
            self.args.impair.clone(),
            stream_seed(self.args.seed, 2 * id),
        )
        .with_packet_size(size_with_headers);
        let back = Impairment::new(
            self.args.impair_return.clone(),
            stream_seed(self.args.seed, 2 * id + 1),
        )
        .with_packet_size(size_with_headers);
        debug!(%client, id, upstream_local = ?upstream.local_addr().ok(), "mapping opened");
        self.mappings.insert(
            id,
            Mapping {
                client,
                upstream,
                forward,
                back,
                last_active: now,
                reader,
            },
        );
        self.by_client.insert(client, id);
        Some(id)
    }

    async fn deliver_due(&mut self, now: Instant) {
        for mapping in self.mappings.values_mut() {
            while let Some(datagram) = mapping.forward.poll_packet(now) {
                if let Err(e) = mapping.upstream.send(&datagram).await {
                    debug!(error = %e, "send upstream failed");
                }
            }
            while let Some(datagram) = mapping.back.poll_packet(now) {
                if let Err(e) = self.listen.send_to(&datagram, mapping.client).await {
                    debug!(error = %e, "send to client failed");
                }
            }
        }
    }

    fn close_idle(&mut self, now: Instant) {
        let idle_timeout = self.idle_timeout();
        let idle: Vec<u64> = self
            .mappings
            .iter()
            .filter(|(_, m)| !m.in_flight() && now.duration_since(m.last_active) >= idle_timeout)
            .map(|(&id, _)| id)
            .collect();
        for id in idle {
            self.close(id);
        }
    }

    fn close(&mut self, id: u64) {
        if let Some(mapping) = self.mappings.remove(&id) {
            mapping.reader.abort();
            self.by_client.remove(&mapping.client);
            self.closed.forward.add(mapping.forward.stats());
            self.closed.back.add(mapping.back.stats());
            debug!(client = %mapping.client, id, "mapping closed");
        }
    }

    /// The earliest delivery time or idle expiry.
    fn next_deadline(&self) -> Option<Instant> {
        let idle_timeout = self.idle_timeout();
        self.mappings
            .values()
            .flat_map(|m| {
                let expiry = (!m.in_flight()).then(|| m.last_active + idle_timeout);
                [m.forward.poll_timeout(), m.back.poll_timeout(), expiry]
            })
            .flatten()
            .min()
    }

    fn shutdown(mut self) -> Totals {
        let ids: Vec<u64> = self.mappings.keys().copied().collect();
        for id in ids {
            self.close(id);
        }
        self.closed
    }
}

/// Per-mapping, per-direction seed; Xoshiro's SplitMix seeding spreads nearby values.
fn stream_seed(seed: u64, stream: u64) -> u64 {
    seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Reads one mapping's upstream socket into the main task's bounded inbox.
async fn read_upstream(id: u64, socket: Arc<UdpSocket>, inbox: mpsc::Sender<(u64, Vec<u8>)>) {
    let mut buf = vec![0u8; MAX_DATAGRAM_BYTES];
    loop {
        match socket.recv(&mut buf).await {
            Ok(len) => {
                if inbox.send((id, buf[..len].to_vec())).await.is_err() {
                    return;
                }
            }
            // An ICMP port unreachable from an upstream that is not listening (yet).
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Err(e) => {
                warn!(id, error = %e, "upstream socket failed; its replies are lost");
                return;
            }
        }
    }
}
