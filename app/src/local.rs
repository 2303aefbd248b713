//! The embedded local network (`peerphone local`, and the desktop app when no login server
//! is configured): a login server, N supernodes and the `echo` test account, all on
//! loopback in this process, so a newcomer can register and make a first call on one
//! machine.
//!
//! [`LocalNetwork::start`] keeps everything under one directory, so the network (accounts,
//! authority key, supernode keys) survives restarts:
//! - `login/`: the login server's authority key and SQLite database;
//! - `supernode-N/`: each supernode's key pair, TURN secret and last directory;
//! - `echo/`: the echo account's profile, and `echo/password` (mode 0600), a password drawn
//!   from the operating system's randomness when the account is first registered.
//!
//! Each service first tries its fixed port ([`LOGIN_PORT`], [`SUPERNODE_PORT`] + i,
//! [`TURN_PORT`] + i on 127.0.0.1), so a profile that remembers the local login server
//! finds it again next time, and falls back to ephemeral ports when those are taken
//! ([`PortChoice`] says which). The supernodes' relays may relay to loopback, where every
//! local client lives.
//!
//! What it does not do: no listening beyond loopback, no metrics endpoints, and it does
//! not touch the user's profile settings (the caller decides whether to use the network).

use crate::cli::{CliError, Context, EchoMode};
use crate::engine::{CallOptions, Engine, EngineConfig, EngineHandle};
use crate::login_client::{self, FlowError, LoginTarget};
use crate::profile::Profile;
use login_server::LoginServer;
use login_server::config::ServerConfig;
use proto::login::Password;
use proto::{DisplayName, PublicKey, UnixTime, UserName};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use supernode::shell::{RunningSupernode, ShellConfig};
use tracing::{debug, info, warn};

/// The login server's fixed port (QUIC on UDP, TLS on TCP).
pub const LOGIN_PORT: u16 = 7400;
/// The first supernode's fixed port (QUIC on UDP, TLS on TCP); the i-th adds i.
pub const SUPERNODE_PORT: u16 = 7500;
/// The first supernode's fixed STUN/TURN port; the i-th adds i.
pub const TURN_PORT: u16 = 3478;
/// The most supernodes one local network runs.
pub const MAX_SUPERNODES: u16 = 64;
/// The echo test account's user name.
pub const ECHO_USER: &str = "echo";
/// How long `start` waits for every supernode to be listed in the directory.
const ADMISSION_WAIT: Duration = Duration::from_secs(10);
/// Shutdown budgets: together under the 5 s CONTRACT.md allows after a stop signal.
const ECHO_STOP: Duration = Duration::from_millis(1500);
const SUPERNODES_STOP: Duration = Duration::from_millis(2000);
const LOGIN_STOP: Duration = Duration::from_millis(1000);

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Whether a service got its fixed port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortChoice {
    /// The documented default port.
    Fixed,
    /// The default was taken; the system chose a port.
    Ephemeral,
}

impl PortChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fixed => "fixed",
            Self::Ephemeral => "ephemeral",
        }
    }
}

/// One running supernode of the local network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalSupernode {
    pub key: PublicKey,
    /// QUIC (UDP) and, on the same port, TLS over TCP.
    pub quic: SocketAddr,
    pub tcp: Option<SocketAddr>,
    /// STUN/TURN (UDP).
    pub turn: Option<SocketAddr>,
    pub ports: PortChoice,
}

/// How the echo account fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EchoStatus {
    /// Registered (or logged in) and online, answering calls.
    Running,
    /// The network runs without it; the reason, for the person.
    Failed(String),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// How many supernodes (1 to [`MAX_SUPERNODES`]).
    pub supernodes: u16,
    /// Run the echo account.
    pub echo: bool,
    /// How the echo account answers: `record` is the classic sound test (a beep, 8 s
    /// recorded, played back); `live` sends back what it hears.
    pub echo_mode: EchoMode,
    /// Try the fixed ports first; `false`: ephemeral ports only (tests).
    pub fixed_ports: bool,
}

impl LocalOptions {
    pub fn new(supernodes: u16) -> Self {
        Self {
            supernodes,
            echo: true,
            echo_mode: EchoMode::Record,
            fixed_ports: true,
        }
    }
}

/// The local network could not start.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("a local network runs 1 to {MAX_SUPERNODES} supernodes, not {0}")]
    SupernodeCount(u16),
    #[error("local network directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("login server: {0}")]
    LoginServer(#[from] login_server::StartError),
    #[error("supernode {index}: {source}")]
    Supernode {
        index: u16,
        source: supernode::shell::StartError,
    },
}

/// A running local network. Stop it with [`LocalNetwork::shutdown`].
pub struct LocalNetwork {
    login: LoginServer,
    login_ports: PortChoice,
    supernodes: Vec<(RunningSupernode, PortChoice)>,
    echo: Option<EchoHandle>,
    echo_status: Option<EchoStatus>,
}

impl std::fmt::Debug for LocalNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalNetwork")
            .field("login", &self.login.quic_addr())
            .field("supernodes", &self.supernode_addrs())
            .field("echo", &self.echo_status)
            .finish()
    }
}

struct EchoHandle {
    engine: EngineHandle,
    drain: tokio::task::JoinHandle<()>,
}

impl LocalNetwork {
    /// Starts a login server, `supernodes` supernodes and the echo account, keeping their
    /// data under `dir` (created when missing). Returns once every supernode is listed in
    /// the directory (or after a bounded wait); the echo account homes in the background.
    pub async fn start(dir: &Path, supernodes: u16) -> Result<Self, LocalError> {
        Self::start_with(dir, LocalOptions::new(supernodes)).await
    }

    /// As [`Self::start`], with every option.
    pub async fn start_with(dir: &Path, options: LocalOptions) -> Result<Self, LocalError> {
        if options.supernodes == 0 || options.supernodes > MAX_SUPERNODES {
            return Err(LocalError::SupernodeCount(options.supernodes));
        }
        create_private_dir(dir)?;
        let (login, login_ports) = start_login(dir, options.fixed_ports).await?;
        let mut network = Self {
            login,
            login_ports,
            supernodes: Vec::new(),
            echo: None,
            echo_status: None,
        };
        for index in 0..options.supernodes {
            match start_supernode(dir, &network.login, index, options.fixed_ports).await {
                Ok(started) => network.supernodes.push(started),
                Err(error) => {
                    network.shutdown().await;
                    return Err(error);
                }
            }
        }
        network.wait_for_admission().await;
        if options.echo {
            match start_echo(dir, network.target(), options.echo_mode).await {
                Ok(echo) => {
                    network.echo = Some(echo);
                    network.echo_status = Some(EchoStatus::Running);
                }
                Err(reason) => {
                    warn!(%reason, "the echo account is not running");
                    network.echo_status = Some(EchoStatus::Failed(reason));
                }
            }
        }
        info!(login = %network.login_addr(), "local network running");
        Ok(network)
    }

    /// The login server's QUIC address (its TLS-over-TCP listener shares the port).
    pub fn login_addr(&self) -> SocketAddr {
        self.login.quic_addr()
    }

    /// The authority key clients must be given.
    pub fn authority_key(&self) -> PublicKey {
        self.login.authority_key()
    }

    /// Whether the login server got [`LOGIN_PORT`].
    pub fn login_ports(&self) -> PortChoice {
        self.login_ports
    }

    /// The supernodes' QUIC addresses.
    pub fn supernode_addrs(&self) -> Vec<SocketAddr> {
        self.supernodes.iter().map(|(s, _)| s.quic_addr()).collect()
    }

    /// Every supernode with all its addresses.
    pub fn supernodes(&self) -> Vec<LocalSupernode> {
        self.supernodes
            .iter()
            .map(|(s, ports)| LocalSupernode {
                key: s.key(),
                quic: s.quic_addr(),
                tcp: s.tcp_addr(),
                turn: s.turn_addr(),
                ports: *ports,
            })
            .collect()
    }

    /// Whether the echo account runs; `None` when it was not asked for.
    pub fn echo_status(&self) -> Option<&EchoStatus> {
        self.echo_status.as_ref()
    }

    /// The echo account's home supernode once it is online there; `None` before, or when
    /// it does not run.
    pub async fn echo_home(&self) -> Option<SocketAddr> {
        self.echo.as_ref()?.engine.home().await.ok().flatten()
    }

    /// The login server and key clients use.
    pub fn target(&self) -> LoginTarget {
        LoginTarget {
            addr: self.login_addr(),
            authority: self.authority_key(),
        }
    }

    /// Stops the echo account (logging it off), then the supernodes (saying goodbye to
    /// their clients and each other), then the login server. Bounded: under 5 s.
    pub async fn shutdown(self) {
        if let Some(echo) = self.echo {
            let _ = tokio::time::timeout(ECHO_STOP, echo.engine.shutdown()).await;
            echo.drain.abort();
        }
        let mut stopping = tokio::task::JoinSet::new();
        for (supernode, _) in self.supernodes {
            stopping.spawn(supernode.shutdown());
        }
        let _ = tokio::time::timeout(SUPERNODES_STOP, async {
            while stopping.join_next().await.is_some() {}
        })
        .await;
        stopping.abort_all();
        let _ = tokio::time::timeout(LOGIN_STOP, self.login.shutdown()).await;
    }

    /// Waits, bounded, until the login server's directory lists every supernode at its
    /// current address, so that a client starting right after `start` finds them. The key
    /// alone is not enough: after a restart the persisted directory still lists each
    /// supernode where it ran last time, until it is admitted again.
    async fn wait_for_admission(&self) {
        let expected: Vec<(PublicKey, SocketAddr)> = self
            .supernodes
            .iter()
            .map(|(s, _)| (s.key(), s.quic_addr()))
            .collect();
        let authority = self.authority_key();
        let listed = async {
            loop {
                if let Ok(signed) = self.login.service().directory().await
                    && let Ok(directory) = signed.verify(&authority, wall_now())
                    && expected.iter().all(|(key, addr)| {
                        directory.entry(key).is_some_and(|e| e.addrs.quic == *addr)
                    })
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        if tokio::time::timeout(ADMISSION_WAIT, listed).await.is_err() {
            warn!("not every supernode was admitted in time; clients may wait for them");
        }
    }
}

fn wall_now() -> UnixTime {
    UnixTime::from_system(SystemTime::now())
}

fn create_private_dir(dir: &Path) -> Result<(), LocalError> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| LocalError::Dir {
            path: dir.to_owned(),
            source,
        })
}

async fn start_login(dir: &Path, fixed: bool) -> Result<(LoginServer, PortChoice), LocalError> {
    let config = |port: u16| {
        let mut config = ServerConfig::local(dir.join("login"));
        config.listen = SocketAddr::new(LOOPBACK, port);
        config
    };
    if fixed {
        match LoginServer::start(config(LOGIN_PORT)).await {
            Ok(server) => return Ok((server, PortChoice::Fixed)),
            Err(error) => debug!(%error, "the login server's fixed port is taken"),
        }
    }
    Ok((LoginServer::start(config(0)).await?, PortChoice::Ephemeral))
}

async fn start_supernode(
    dir: &Path,
    login: &LoginServer,
    index: u16,
    fixed: bool,
) -> Result<(RunningSupernode, PortChoice), LocalError> {
    let config = |quic_port: u16, turn_port: u16| {
        let mut config = ShellConfig::new(
            login.quic_addr(),
            login.authority_key(),
            dir.join(format!("supernode-{}", index + 1)),
        );
        config.listen = SocketAddr::new(LOOPBACK, quic_port);
        config.tcp_listen = Some(SocketAddr::new(LOOPBACK, quic_port));
        config.turn_listen = Some(SocketAddr::new(LOOPBACK, turn_port));
        config.allow_relay_to =
            vec![nat::turn::Cidr::new(LOOPBACK, 8).expect("invariant: /8 fits an IPv4 address")];
        config
    };
    if fixed {
        match RunningSupernode::start(config(SUPERNODE_PORT + index, TURN_PORT + index)).await {
            Ok(supernode) => return Ok((supernode, PortChoice::Fixed)),
            Err(error) => debug!(%error, index, "a supernode's fixed ports are taken"),
        }
    }
    RunningSupernode::start(config(0, 0))
        .await
        .map(|s| (s, PortChoice::Ephemeral))
        .map_err(|source| LocalError::Supernode {
            index: index + 1,
            source,
        })
}

/// Registers the echo account on first use (its password drawn from the OS and kept in
/// `echo/password`), logs it in later, and runs it with the engine's echo service.
async fn start_echo(dir: &Path, target: LoginTarget, mode: EchoMode) -> Result<EchoHandle, String> {
    let echo_dir = dir.join("echo");
    let profile = Profile::open(&echo_dir).map_err(|e| e.to_string())?;
    let user = UserName::new(ECHO_USER).map_err(|e| e.to_string())?;
    let password_file = echo_dir.join("password");
    let credential = match read_password(&password_file)? {
        Some(password) => {
            let remembered = profile
                .settings()
                .map_err(|e| e.to_string())?
                .user
                .is_some();
            if remembered {
                login_client::ensure_credential(&profile, &target, || Ok(password))
                    .await
                    .map(|(_, c)| c)
            } else {
                // Registration was cut short last time: finish it, or log in if it went
                // through.
                match register_echo(&profile, &target, &user, &password).await {
                    Err(FlowError::NameTaken(_)) => {
                        login_client::login(&profile, &target, &user, &password).await
                    }
                    other => other,
                }
            }
        }
        None => {
            let password = new_password(&password_file)?;
            register_echo(&profile, &target, &user, &password)
                .await
                .map_err(|e| match e {
                    FlowError::NameTaken(_) => FlowError::Password(format!(
                        "an `{ECHO_USER}` account exists but its password is not in {}",
                        password_file.display()
                    )),
                    other => other,
                })
        }
    }
    .map_err(|e| e.to_string())?;
    let mut config = EngineConfig::new(profile, target, credential);
    config.calls = CallOptions {
        auto_answer: true,
        echo: Some(mode),
        ..CallOptions::default()
    };
    let (engine, mut events) = Engine::start(config).await.map_err(|e| e.to_string())?;
    // Nobody reads the echo account's events; they are only logged.
    let drain = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            debug!(event = %echo_log_line(&event), "echo account");
        }
    });
    Ok(EchoHandle { engine, drain })
}

/// How an echo account event is logged: chat text never reaches the log.
fn echo_log_line(event: &crate::events::Event) -> String {
    match event {
        crate::events::Event::Chat { from, .. } => format!("chat message from {from}"),
        other => other.to_text(),
    }
}

async fn register_echo(
    profile: &Profile,
    target: &LoginTarget,
    user: &UserName,
    password: &Password,
) -> Result<proto::SignedCredential, FlowError> {
    let display = DisplayName::new("Echo / Sound Test Service")
        .map_err(|e| FlowError::Protocol(e.to_string()))?;
    login_client::register(profile, target, user, &display, password).await
}

fn read_password(path: &Path) -> Result<Option<Password>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Password::new(text.trim().to_owned())
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Draws a password from the operating system's randomness and stores it (mode 0600)
/// before the account is registered, so a registration that succeeds is never left
/// without its password.
fn new_password(path: &Path) -> Result<Password, String> {
    use rand::TryRng as _;
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut bytes = [0u8; 24];
    rand::rngs::SysRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| format!("no randomness from the OS: {e}"))?;
    let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let partial = path.with_extension("partial");
    let write = || -> std::io::Result<()> {
        // A leftover partial file keeps its old mode when truncated: start from a new one.
        match std::fs::remove_file(&partial) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&partial, path)?;
        // The rename itself must survive a power cut, or the account loses its password.
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| format!("{}: {e}", path.display()))?;
    Password::new(text).map_err(|e| e.to_string())
}

/// `peerphone local`: runs the network until SIGINT or SIGTERM, printing its addresses.
pub async fn run(ctx: &Context, supernodes: u16) -> Result<(), CliError> {
    // Installed before anything is printed: a script that stops us as soon as it has read
    // the addresses must find the handlers in place.
    let stop = stop_signal().map_err(|e| CliError::Other(format!("signal handlers: {e}")))?;
    let dir = ctx.profile.dir().join("local");
    let network = LocalNetwork::start(&dir, supernodes)
        .await
        .map_err(|e| CliError::Other(e.to_string()))?;
    print_network(ctx, &network, &dir);
    stop.await;
    network.shutdown().await;
    ctx.out.event(
        serde_json::json!({"event": "local_network_stopped"}),
        || "local network stopped".to_owned(),
    );
    Ok(())
}

fn print_network(ctx: &Context, network: &LocalNetwork, dir: &Path) {
    let supernodes = network.supernodes();
    let (echo_running, echo_error) = match network.echo_status() {
        Some(EchoStatus::Running) => (true, None),
        Some(EchoStatus::Failed(reason)) => (false, Some(reason.clone())),
        None => (false, None),
    };
    let json = serde_json::json!({
        "event": "local_network",
        "login_server": network.login_addr().to_string(),
        "authority_key": network.authority_key().to_string(),
        "login_ports": network.login_ports().as_str(),
        "supernodes": supernodes.iter().map(|s| serde_json::json!({
            "key": s.key.to_string(),
            "addr": s.quic.to_string(),
            "tcp": s.tcp.map(|a| a.to_string()),
            "turn": s.turn.map(|a| a.to_string()),
            "ports": s.ports.as_str(),
        })).collect::<Vec<_>>(),
        "echo": {"user": ECHO_USER, "running": echo_running, "error": echo_error},
        "data_dir": dir.display().to_string(),
    });
    ctx.out.event(json, || {
        let mut lines = vec![
            format!(
                "login server   {} ({} port)",
                network.login_addr(),
                network.login_ports().as_str()
            ),
            format!("authority key  {}", network.authority_key()),
        ];
        for (i, s) in supernodes.iter().enumerate() {
            lines.push(format!(
                "supernode {}    {} (turn {}, {} ports)",
                i + 1,
                s.quic,
                s.turn.map_or_else(|| "none".to_owned(), |a| a.to_string()),
                s.ports.as_str()
            ));
        }
        lines.push(match &echo_error {
            None if echo_running => {
                format!("echo account   {ECHO_USER} (call it to test your sound)")
            }
            None => format!("echo account   {ECHO_USER} (not started)"),
            Some(reason) => format!("echo account   {ECHO_USER} not running: {reason}"),
        });
        lines.push(format!("data           {}", dir.display()));
        lines.push(format!(
            "try            peerphone --login-server {} --authority-key {} register USER",
            network.login_addr(),
            network.authority_key()
        ));
        lines.push("running until Ctrl-C".to_owned());
        lines.join("\n")
    });
}

/// A future that resolves on SIGINT or SIGTERM; the handlers are installed at once.
fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn echo_password_is_private_even_over_a_leftover_partial_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("password");
        let partial = path.with_extension("partial");
        std::fs::write(&partial, "old").expect("write leftover");
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o644))
            .expect("chmod leftover");
        let password = new_password(&path).expect("new password");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let stored = read_password(&path).expect("read").expect("present");
        assert_eq!(stored.expose(), password.expose());
        assert!(!partial.exists());
    }

    #[test]
    fn echo_account_log_lines_never_carry_chat_text() {
        let event = crate::events::Event::Chat {
            from: UserName::new("alice").expect("name"),
            id: "00".into(),
            text: "my secret plans".into(),
            sent_at: 0,
        };
        let line = echo_log_line(&event);
        assert!(!line.contains("secret"), "{line}");
        assert!(line.contains("alice"), "{line}");
    }
}
