//! Peerphone's public side on a lab: a `login-server` and supernodes (each with two
//! addresses, STUN/TURN on `--turn-listen` with `--alternate-addr`) on the public segment,
//! started from the workspace's built binaries and waited for until admitted.
//!
//! Does not: build the binaries (find them with [`ProductBinaries::find`]), or start
//! clients (tests spawn `peerphone` in client hosts themselves).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Host, Lab, LabError, LabProcess};

/// Supernode `n` (from 1) gets 203.0.113.(10 + 2(n-1)) and the next address.
pub const SUPERNODE_HOSTS_FROM: usize = 10;
/// The login server's QUIC port on its host.
pub const LOGIN_PORT: u16 = 7400;
/// A supernode's QUIC port.
pub const SUPERNODE_PORT: u16 = 7500;
/// A supernode's STUN/TURN port on its first address.
pub const TURN_PORT: u16 = 3478;
/// A supernode's alternate STUN port on its second address (RFC 5780).
pub const TURN_ALT_PORT: u16 = 3479;
/// Ranges the lab supernodes may relay to: the public segment is a documentation range,
/// which relays refuse by default.
pub const LAB_RELAY_ALLOW: &str = "203.0.113.0/24";

/// Paths of the product binaries.
#[derive(Debug, Clone)]
pub struct ProductBinaries {
    /// `login-server`.
    pub login_server: PathBuf,
    /// `supernode`.
    pub supernode: PathBuf,
}

impl ProductBinaries {
    /// Finds both next to the running test (see [`crate::target_binary`]); when one is
    /// missing, prints a loud SKIP line naming `test` and returns `None`.
    pub fn find(test: &str) -> Option<ProductBinaries> {
        let login_server = crate::target_binary("login-server");
        let supernode = crate::target_binary("supernode");
        match (login_server, supernode) {
            (Some(login_server), Some(supernode)) => Some(ProductBinaries {
                login_server,
                supernode,
            }),
            _ => {
                eprintln!("**************************************************************");
                eprintln!("SKIP {test}: login-server or supernode binary is not built");
                eprintln!(
                    "(`cargo test --workspace` builds them; or `cargo build -p login-server -p supernode`)"
                );
                eprintln!("**************************************************************");
                None
            }
        }
    }
}

/// A running login server.
#[derive(Debug)]
pub struct LoginServer {
    /// Its host.
    pub host: Host,
    /// Its QUIC address (`--login-server` of everyone else).
    pub addr: SocketAddr,
    /// The authority public key (`--authority-key`).
    pub authority_key: String,
    /// The process (stderr holds its logs).
    pub process: LabProcess,
}

/// A running supernode.
#[derive(Debug)]
pub struct Supernode {
    /// Its host (two addresses).
    pub host: Host,
    /// Its QUIC address.
    pub quic_addr: SocketAddr,
    /// STUN/TURN (`--turn-listen`), on the first address.
    pub turn_addr: SocketAddr,
    /// The RFC 5780 alternate address (`--alternate-addr`), on the second address.
    pub alternate_addr: SocketAddr,
    /// The process (stderr holds its logs).
    pub process: LabProcess,
    /// Its `--data-dir`.
    pub data_dir: PathBuf,
}

impl Supernode {
    /// REST-style TURN credentials for `user`, valid `ttl_s` seconds, minted with the
    /// supernode's TURN secret read from its data directory (`turn-secret.key`, the way the
    /// supernode derives it). For tests of the relay path until `peerphone
    /// turn-credentials` can fetch them from a session.
    pub fn turn_credentials(
        &self,
        user: &str,
        ttl_s: u64,
    ) -> Result<nat::turn::credentials::TurnCredentials, LabError> {
        let text = std::fs::read_to_string(self.data_dir.join("turn-secret.key"))?;
        let key = proto::SecretKey::from_text(&text)
            .map_err(|e| LabError::Agent(format!("supernode TURN secret: {e}")))?;
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(nat::turn::credentials::mint(
            key.to_bytes().as_slice(),
            user,
            now_unix,
            ttl_s,
        ))
    }
}

/// The login server and supernodes of a lab.
#[derive(Debug)]
pub struct PublicSide {
    /// The login server (host `login`, 203.0.113.2).
    pub login: LoginServer,
    /// The supernodes (hosts `sn1` on 203.0.113.10 and .11, `sn2` on .12 and .13, …).
    pub supernodes: Vec<Supernode>,
}

impl PublicSide {
    /// Starts a login server and `supernode_count` supernodes on new public hosts of `lab`,
    /// keeping their data under `data_dir`, and waits (up to `timeout` each) until each
    /// supernode's relay listens and the login server has admitted it.
    pub fn start(
        lab: &mut Lab,
        binaries: &ProductBinaries,
        data_dir: &Path,
        supernode_count: usize,
        timeout: Duration,
    ) -> Result<PublicSide, LabError> {
        let login_host = lab.public_host_at("login", &[Ipv4Addr::new(203, 0, 113, 2)])?;
        let addr = SocketAddr::new(IpAddr::V4(login_host.ip()), LOGIN_PORT);
        let mut command = login_host.command(&binaries.login_server);
        command
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(data_dir.join("login"));
        let mut process = login_host.spawn(command)?;
        let ready = process.wait_for_stdout(timeout, |l| l.starts_with("listening"))?;
        let authority_key = ready
            .split_whitespace()
            .find_map(|field| field.strip_prefix("authority="))
            .ok_or_else(|| LabError::Agent(format!("no authority= in {ready:?}")))?
            .to_string();
        let login = LoginServer {
            host: login_host,
            addr,
            authority_key,
            process,
        };
        let mut supernodes = Vec::new();
        for index in 1..=supernode_count {
            supernodes.push(start_supernode(lab, binaries, data_dir, &login, index)?);
        }
        for supernode in &supernodes {
            supernode
                .process
                .wait_for_stderr(timeout, |l| l.contains("admitted by the login server"))
                .map_err(|e| {
                    LabError::Agent(format!(
                        "{e}; supernode stderr:\n{}",
                        supernode.process.stderr_text()
                    ))
                })?;
        }
        Ok(PublicSide { login, supernodes })
    }
}

fn start_supernode(
    lab: &mut Lab,
    binaries: &ProductBinaries,
    data_dir: &Path,
    login: &LoginServer,
    index: usize,
) -> Result<Supernode, LabError> {
    let first = u8::try_from(SUPERNODE_HOSTS_FROM + 2 * (index - 1))
        .map_err(|_| LabError::Exhausted("supernode"))?;
    let host = lab.public_host_at(
        &format!("sn{index}"),
        &[
            Ipv4Addr::new(203, 0, 113, first),
            Ipv4Addr::new(203, 0, 113, first.saturating_add(1)),
        ],
    )?;
    let quic_addr = SocketAddr::new(IpAddr::V4(host.addrs()[0]), SUPERNODE_PORT);
    let turn_addr = SocketAddr::new(IpAddr::V4(host.addrs()[0]), TURN_PORT);
    let alternate_addr = SocketAddr::new(IpAddr::V4(host.addrs()[1]), TURN_ALT_PORT);
    let mut command = host.command(&binaries.supernode);
    // Readiness is read from its info-level log lines, whatever the caller's RUST_LOG.
    command
        .env("RUST_LOG", "info")
        .args(["--login-server", &login.addr.to_string()])
        .args(["--authority-key", &login.authority_key])
        .args(["--listen", &quic_addr.to_string()])
        .args(["--turn-listen", &turn_addr.to_string()])
        .args(["--alternate-addr", &alternate_addr.to_string()])
        .args(["--allow-relay-to", LAB_RELAY_ALLOW])
        .arg("--data-dir")
        .arg(data_dir.join(format!("sn{index}")));
    let process = host.spawn(command)?;
    let data_dir = data_dir.join(format!("sn{index}"));
    Ok(Supernode {
        host,
        quic_addr,
        turn_addr,
        alternate_addr,
        process,
        data_dir,
    })
}
