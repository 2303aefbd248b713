//! `supernode`: homes clients, carries presence, search and signalling across the mesh, and
//! runs STUN/TURN. See CONTRACT.md for the command line; every flag also has a key in the
//! `--config` TOML file (flags win).

use anyhow::Context as _;
use clap::Parser;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use supernode::shell::{RunningSupernode, ShellConfig};

#[derive(Debug, Parser)]
#[command(name = "supernode", version, about = "Peerphone supernode")]
struct Args {
    /// The login server's QUIC address (IP:PORT).
    #[arg(long)]
    login_server: Option<SocketAddr>,
    /// The login server's authority public key (unpadded base64url; it may start with '-').
    #[arg(long, allow_hyphen_values = true)]
    authority_key: Option<String>,
    /// QUIC endpoint for clients and other supernodes [default: 0.0.0.0:7500].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// STUN and TURN over UDP [default: 0.0.0.0:3478].
    #[arg(long)]
    turn_listen: Option<SocketAddr>,
    /// TCP (TLS) endpoint for clients whose UDP is blocked [default: the --listen address].
    #[arg(long)]
    tcp_listen: Option<SocketAddr>,
    /// The address clients should use when it differs from --listen.
    #[arg(long)]
    public_addr: Option<SocketAddr>,
    /// A second address of this host, for RFC 5780 behaviour discovery.
    #[arg(long)]
    alternate_addr: Option<SocketAddr>,
    /// UDP port range of relay allocations, LOW-HIGH.
    #[arg(long)]
    relay_ports: Option<String>,
    /// Address ranges the relay may send to although refused by default (repeatable).
    #[arg(long)]
    allow_relay_to: Vec<String>,
    /// A TURN or STUN URL handed to clients with their TURN credentials, instead of this
    /// supernode's own relay (repeatable), e.g. `turn:203.0.113.7:3478?transport=udp` for
    /// a coturn server; needs --turn-secret-file. Clients use the first `turn:` URL with a
    /// literal IP.
    #[arg(long = "turn-url", value_name = "URL")]
    turn_url: Vec<String>,
    /// A file holding the TURN REST shared secret (coturn's `--use-auth-secret
    /// --static-auth-secret`): credentials are minted with it and the built-in relay checks
    /// it. Surrounding whitespace is ignored [default: a secret in the data directory].
    #[arg(long, value_name = "FILE")]
    turn_secret_file: Option<PathBuf>,
    /// Key pair and state [default: ~/.local/share/peerphone/supernode].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Prometheus text at /metrics, liveness at /healthz.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Homed clients above which new clients are answered "busy" [default: 20000].
    #[arg(long)]
    max_clients: Option<usize>,
    /// Seconds without application messages after which an idle client's session is
    /// parked (its QUIC connection closes; sealed UDP heartbeats keep it homed); 0: never
    /// [default: 45].
    #[arg(long)]
    park_after_secs: Option<u64>,
    /// A TOML file with a key for every flag.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, value_parser = ["text", "json"])]
    log_format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    login_server: Option<SocketAddr>,
    authority_key: Option<String>,
    listen: Option<SocketAddr>,
    turn_listen: Option<SocketAddr>,
    tcp_listen: Option<SocketAddr>,
    public_addr: Option<SocketAddr>,
    alternate_addr: Option<SocketAddr>,
    relay_ports: Option<String>,
    #[serde(default)]
    allow_relay_to: Vec<String>,
    #[serde(default)]
    turn_url: Vec<String>,
    turn_secret_file: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    metrics_listen: Option<SocketAddr>,
    max_clients: Option<usize>,
    park_after_secs: Option<u64>,
    log_format: Option<String>,
}

/// A usage error: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Usage(String);

fn default_data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("peerphone/supernode")
}

fn build_config(args: Args) -> Result<(ShellConfig, String), anyhow::Error> {
    let file: FileConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text).map_err(|e| Usage(format!("{}: {e}", path.display())))?
        }
        None => FileConfig::default(),
    };
    let login_server = args
        .login_server
        .or(file.login_server)
        .ok_or_else(|| Usage("--login-server is required".into()))?;
    let authority_text = args
        .authority_key
        .or(file.authority_key)
        .ok_or_else(|| Usage("--authority-key is required".into()))?;
    let authority: proto::PublicKey = authority_text
        .parse()
        .map_err(|e| Usage(format!("--authority-key: {e}")))?;
    let data_dir = args
        .data_dir
        .or(file.data_dir)
        .unwrap_or_else(default_data_dir);
    let mut config = ShellConfig::new(login_server, authority, data_dir);
    config.listen = args
        .listen
        .or(file.listen)
        .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 7500)));
    config.tcp_listen = Some(args.tcp_listen.or(file.tcp_listen).unwrap_or(config.listen));
    config.turn_listen = Some(
        args.turn_listen
            .or(file.turn_listen)
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 3478))),
    );
    config.public_addr = args.public_addr.or(file.public_addr);
    config.alternate_addr = args.alternate_addr.or(file.alternate_addr);
    if let Some(ports) = args.relay_ports.or(file.relay_ports) {
        config.relay_ports = Some(
            supernode::relay::parse_port_range(&ports)
                .map_err(|e| Usage(format!("--relay-ports: {e}")))?,
        );
    }
    let cidrs = if args.allow_relay_to.is_empty() {
        file.allow_relay_to
    } else {
        args.allow_relay_to
    };
    for cidr in cidrs {
        config.allow_relay_to.push(
            cidr.parse()
                .map_err(|e| Usage(format!("--allow-relay-to {cidr}: {e}")))?,
        );
    }
    let turn_urls = if args.turn_url.is_empty() {
        file.turn_url
    } else {
        args.turn_url
    };
    for url in &turn_urls {
        if !is_turn_url(url) {
            return Err(Usage(format!(
                "--turn-url {url}: not a turn:, turns: or stun: URL with a host"
            ))
            .into());
        }
    }
    if let Some(path) = args.turn_secret_file.or(file.turn_secret_file) {
        let text = std::fs::read(&path)
            .with_context(|| format!("reading the TURN secret {}", path.display()))?;
        let secret = text.trim_ascii();
        if secret.is_empty() {
            anyhow::bail!("the TURN secret file {} is empty", path.display());
        }
        config.turn_secret = Some(supernode::shell::TurnSecret(secret.to_vec()));
    } else if !turn_urls.is_empty() {
        return Err(Usage(
            "--turn-url needs --turn-secret-file (the secret the TURN server checks credentials with)"
                .into(),
        )
        .into());
    }
    config.turn_urls = turn_urls;
    config.metrics_listen = args.metrics_listen.or(file.metrics_listen);
    if let Some(max) = args.max_clients.or(file.max_clients) {
        config.core.max_clients = max.max(1);
    }
    if let Some(secs) = args.park_after_secs.or(file.park_after_secs) {
        config.core.park_after = std::time::Duration::from_secs(secs);
    }
    let log_format = args
        .log_format
        .or(file.log_format)
        .unwrap_or_else(|| "text".into());
    if log_format != "text" && log_format != "json" {
        return Err(Usage(format!(
            "--log-format must be text or json, not {log_format}"
        ))
        .into());
    }
    Ok((config, log_format))
}

/// `turn:HOST[:PORT][?…]`, `turns:…` or `stun:…` (RFC 7064/7065 shape, loosely).
fn is_turn_url(url: &str) -> bool {
    let rest = ["turn:", "turns:", "stun:"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme));
    rest.is_some_and(|r| {
        let host = r.split(['?', '/']).next().unwrap_or_default();
        !host.is_empty() && !host.starts_with(':') && !host.contains(char::is_whitespace)
    })
}

fn init_logs(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(config: ShellConfig) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Handlers first: a signal arriving while the listeners start still shuts down cleanly.
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let running = RunningSupernode::start(config).await?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down");
    tokio::time::timeout(std::time::Duration::from_secs(4), running.shutdown())
        .await
        .ok();
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (config, log_format) = match build_config(args) {
        Ok(c) => c,
        Err(error) => {
            eprintln!("supernode: {error:#}");
            return if error.is::<Usage>() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            };
        }
    };
    init_logs(&log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(error) => {
            eprintln!("supernode: starting the runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("supernode: {error:#}");
            ExitCode::from(1)
        }
    }
}
