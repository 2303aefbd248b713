//! `netcheck-probe`: runs `nat::discovery` (RFC 5780 NAT behaviour discovery) over a real
//! UDP socket against a STUN server with an alternate address and prints the report as
//! the one JSON object of `peerphone netcheck` (CONTRACT.md). A stand-in shell for tests
//! until the app's own netcheck lands; exits 1 on errors.
//!
//! Usage: `netcheck-probe --server ADDR [--secondary ADDR] [--bind ADDR] [--rto-ms N]
//! [--max-transmissions N]`

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nat::discovery::{DiscoveryConfig, DiscoveryEvent, NatDiscovery};

/// Discovery always ends by itself; this guards against a bug turning into a hung test.
const OVERALL_LIMIT: Duration = Duration::from_secs(120);

struct Args {
    server: SocketAddr,
    secondary: Option<SocketAddr>,
    bind: SocketAddr,
    rto: Option<Duration>,
    max_transmissions: Option<u32>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut server = None;
    let mut secondary = None;
    let mut bind: SocketAddr = "0.0.0.0:0".parse().context("invariant: literal address")?;
    let mut rto = None;
    let mut max_transmissions = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let bad = || format!("{flag}: bad value {value:?}");
        match flag.as_str() {
            "--server" => server = Some(value.parse().with_context(bad)?),
            "--secondary" => secondary = Some(value.parse().with_context(bad)?),
            "--bind" => bind = value.parse().with_context(bad)?,
            "--rto-ms" => rto = Some(Duration::from_millis(value.parse().with_context(bad)?)),
            "--max-transmissions" => max_transmissions = Some(value.parse().with_context(bad)?),
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(Args {
        server: server.context("--server ADDR is required")?,
        secondary,
        bind,
        rto,
        max_transmissions,
    })
}

/// The source address the kernel would use towards `server` (no packet is sent).
fn route_source(server: SocketAddr) -> anyhow::Result<std::net::IpAddr> {
    let probe = UdpSocket::bind("0.0.0.0:0").context("binding a route probe")?;
    probe
        .connect(server)
        .with_context(|| format!("no route to {server}"))?;
    Ok(probe.local_addr()?.ip())
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!(
                "netcheck-probe: {e:#}\nusage: netcheck-probe --server ADDR [--secondary ADDR] \
                 [--bind ADDR] [--rto-ms N] [--max-transmissions N]"
            );
            std::process::exit(2);
        }
    };
    match discover(&args) {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("netcheck-probe: {e:#}");
            std::process::exit(1);
        }
    }
}

fn discover(args: &Args) -> anyhow::Result<String> {
    let socket = UdpSocket::bind(args.bind).with_context(|| format!("binding {}", args.bind))?;
    let local = socket.local_addr()?;
    let local_ip = if local.ip().is_unspecified() {
        route_source(args.server)?
    } else {
        local.ip()
    };
    let mut config =
        DiscoveryConfig::new(args.server, vec![SocketAddr::new(local_ip, local.port())]);
    config.secondary_server = args.secondary;
    if let Some(rto) = args.rto {
        config.retransmit.initial_rto = rto;
        config.negative_retransmit.initial_rto = rto;
    }
    if let Some(max) = args.max_transmissions {
        config.retransmit.max_transmissions = max.max(1);
    }
    let started = Instant::now();
    let mut discovery = NatDiscovery::new(config, started, rand::random());
    let mut buf = [0u8; 1500];
    loop {
        while let Some(transmit) = discovery.poll_transmit() {
            // Unreachable destinations are a result (UDP blocked), not an error.
            let _ = socket.send_to(&transmit.payload, transmit.destination);
        }
        if let Some(DiscoveryEvent::Finished(report)) = discovery.poll_event() {
            return serde_json::to_string(&report).context("encoding the report");
        }
        let now = Instant::now();
        if now.duration_since(started) > OVERALL_LIMIT {
            bail!("discovery did not finish within {OVERALL_LIMIT:?}");
        }
        let Some(due) = discovery.poll_timeout() else {
            bail!("discovery stalled without a timer");
        };
        if due <= now {
            discovery.handle_timeout(now);
            continue;
        }
        socket.set_read_timeout(Some(due - now))?;
        match socket.recv_from(&mut buf) {
            Ok((len, from)) => {
                discovery.handle_datagram(Instant::now(), from, &buf[..len]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                discovery.handle_timeout(Instant::now());
            }
            // ICMP errors surface on some sockets as refused/unreachable: keep waiting.
            Err(_) => {}
        }
    }
}
