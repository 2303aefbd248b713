//! `netcheck-probe`: runs `nat::discovery` (RFC 5780 NAT behaviour discovery) over a real
//! UDP socket against a STUN server with an alternate address and prints the report as
//! the one JSON object of `peerphone netcheck` (CONTRACT.md). A stand-in shell for tests
//! until the app's own netcheck lands; exits 1 on errors.
//!
//! Usage: `netcheck-probe --server ADDR [--secondary ADDR] [--bind ADDR] [--rto-ms N]
//! [--max-transmissions N]`

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::{Context, bail};

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
    let mut config = lab::netcheck::config_for(&socket, args.server)?;
    config.secondary_server = args.secondary;
    if let Some(rto) = args.rto {
        config.retransmit.initial_rto = rto;
        config.negative_retransmit.initial_rto = rto;
    }
    if let Some(max) = args.max_transmissions {
        config.retransmit.max_transmissions = max.max(1);
    }
    let report = lab::netcheck::discover(&socket, config, OVERALL_LIMIT)?;
    serde_json::to_string(&report).context("encoding the report")
}
