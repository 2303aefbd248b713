//! The `login-server` binary: flags and config file, logging, signals. All the work is in
//! the library.

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use login_server::config::FileConfig;
use login_server::{LoginServer, ServerConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Peerphone login server: accounts, credentials, buddy lists, offline mailbox and the
/// supernode directory.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// QUIC endpoint (UDP). Default 0.0.0.0:7400.
    #[arg(long, global = true)]
    listen: Option<SocketAddr>,
    /// The same service over TCP (TLS). Default: the --listen address, on TCP.
    #[arg(long, global = true)]
    tcp_listen: Option<SocketAddr>,
    /// Authority key and (without --database) the SQLite database. Created when missing.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// `sqlite:PATH` or `postgres://...`.
    #[arg(long, global = true)]
    database: Option<String>,
    /// Prometheus text at /metrics, liveness at /healthz.
    #[arg(long, global = true)]
    metrics_listen: Option<SocketAddr>,
    /// TOML file with a key for every flag (flags win).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    /// Admit supernodes on loopback addresses (local and test networks only).
    #[arg(long, global = true)]
    allow_loopback_supernodes: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the authority public key (creating the key when missing) and exit.
    AuthorityKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

const DEFAULT_LISTEN: &str = "0.0.0.0:7400";
const DEFAULT_DATA_DIR: &str = "login-server-data";

fn init_logging(format: LogFormat) {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("login-server: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let file = match &cli.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let log_format = match (cli.log_format, file.log_format.as_deref()) {
        (Some(f), _) => f,
        (None, Some("json")) => LogFormat::Json,
        (None, Some("text") | None) => LogFormat::Text,
        (None, Some(other)) => anyhow::bail!("log-format must be text or json, not {other}"),
    };
    init_logging(log_format);
    let data_dir = cli
        .data_dir
        .or(file.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    if let Some(Command::AuthorityKey) = cli.command {
        let key = login_server::authority_key(&data_dir)?;
        println!("{}", key.public());
        return Ok(());
    }
    let listen = match cli.listen.or(file.listen) {
        Some(addr) => addr,
        None => DEFAULT_LISTEN.parse().context("default listen address")?,
    };
    let mut config = ServerConfig::new(listen, data_dir);
    if let Some(addr) = cli.tcp_listen.or(file.tcp_listen) {
        config.tcp_listen = login_server::config::TcpListen::At(addr);
    }
    config.database = cli.database.or(file.database.clone());
    config.metrics_listen = cli.metrics_listen.or(file.metrics_listen);
    file.apply_policies(&mut config)?;
    if cli.allow_loopback_supernodes {
        config.service.admission.allow_loopback = true;
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let server = LoginServer::start(config).await?;
        // One machine-readable line for scripts and tests (port 0 picks a free port).
        let metrics = server
            .metrics_addr()
            .map(|a| format!(" metrics={a}"))
            .unwrap_or_default();
        let tcp = server
            .tcp_addr()
            .map(|a| format!(" tcp={a}"))
            .unwrap_or_default();
        println!(
            "listening quic={}{tcp} authority={}{metrics}",
            server.quic_addr(),
            server.authority_key()
        );
        wait_for_signal().await?;
        tracing::info!("shutting down");
        server.shutdown().await;
        Ok(())
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}
