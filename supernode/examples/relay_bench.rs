//! Runs the supernode's STUN/TURN relay alone, for benchmarks and manual tests with
//! `turnutils_uclient`: `cargo run --release -p supernode --example relay_bench --
//! --listen 127.0.0.1:3478 --relay-ports 40000-45000 --allow-relay-to 127.0.0.0/8
//! --secret SECRET`. Stops on Ctrl-C / SIGTERM and prints its counters.

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::Parser;
use nat::turn::Cidr;
use supernode::relay::{RelayConfig, RelayServer, parse_port_range};

#[derive(Debug, Parser)]
struct Args {
    /// STUN/TURN listen address.
    #[arg(long, default_value = "127.0.0.1:3478")]
    listen: SocketAddr,
    /// Relay port range LOW-HIGH.
    #[arg(long, default_value = "49152-65535")]
    relay_ports: String,
    /// Ranges the relay may send to although refused by default.
    #[arg(long)]
    allow_relay_to: Vec<Cidr>,
    /// TURN REST API shared secret.
    #[arg(long)]
    secret: String,
    /// REALM.
    #[arg(long, default_value = "peer")]
    realm: String,
    /// Allocations per user.
    #[arg(long, default_value_t = 10_000)]
    max_allocations_per_user: usize,
    /// Bandwidth cap per allocation, bytes per second.
    #[arg(long, default_value_t = 1_000_000)]
    bandwidth_cap_bytes_per_s: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(async move {
        let mut config = RelayConfig::new(args.listen, args.secret.into_bytes());
        config.relay_ports = parse_port_range(&args.relay_ports)?;
        config.allow_relay_to = args.allow_relay_to;
        config.realm = args.realm;
        config.max_allocations_per_user = args.max_allocations_per_user;
        config.max_allocations_total = 100_000;
        config.bandwidth_cap_bytes_per_s = args.bandwidth_cap_bytes_per_s;
        let relay = RelayServer::start(config).await?;
        println!("listening on {}", relay.listen_addr());
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("SIGTERM handler")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        if let Some(stats) = relay.stats().await {
            eprintln!("{stats:?}");
        }
        relay.shutdown().await;
        Ok(())
    })
}
