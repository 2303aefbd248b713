//! A lab of hosts in Linux network namespaces, joined by a "public internet" bridge and real
//! nftables NAT routers, for Peerphone's end-to-end tests (NAT traversal, the call matrix).
//!
//! - [`Lab`]: owns every namespace it creates; dropping it kills the processes inside and
//!   deletes the namespaces. Namespace names carry a per-process prefix
//!   (`pplab<pid>x<seq>-`), so concurrent test binaries never collide, and the first lab of
//!   a process sweeps the leftovers of crashed runs (prefixes whose process is gone).
//! - [`Host`]: one namespace; builds [`std::process::Command`]s that run inside it
//!   (`ip netns exec`), and [`LabProcess`]es that capture output and die with the handle.
//! - [`Router`]: a NAT router of a [`NatKind`] (nftables recipes in [`rules`], explained in
//!   docs/nat-lab.md) with a public side and a private LAN of its own.
//! - [`servers::PublicSide`]: the product's login server and supernodes on the public
//!   segment, for call-matrix tests.
//! - [`netcheck`]: a blocking shell around `nat::discovery` (the `netcheck-probe` binary).
//! - [`agent::Agent`]: drives the `lab-agent` helper binary inside a host: UDP sockets to
//!   send, receive and reflect datagrams, for measuring what a NAT does.
//!
//! Helper binaries (for tests; `env!("CARGO_BIN_EXE_…")` here, [`target_binary`] elsewhere):
//! `lab-agent` (see [`agent`]), `stun-server` (`nat::stun::server` on four sockets),
//! `netcheck-probe` (`nat::discovery`, prints the netcheck JSON) and `holepunch-probe`
//! (`nat::holepunch`, optionally with a `nat::turn::client` allocation; signalling on stdio).
//!
//! Addresses: the public segment is 203.0.113.0/24 (public hosts from .2, routers from
//! .100), every private LAN a 100.64.N.0/24 of its own. Nothing is routed outside the lab.
//!
//! Does not: emulate delay or bandwidth (the kernel here has no netem; loss only, with
//! nftables `numgen` on forwarding hops), support IPv6 (disabled in every namespace), or
//! work without root (see [`require_root`]).

pub mod agent;
mod cmd;
pub mod netcheck;
mod process;
pub mod rules;
pub mod servers;
mod topology;

use std::path::PathBuf;
use std::time::Duration;

pub use process::{LabProcess, OutputStream};
pub use rules::NatKind;
pub use topology::{Behind, Client, Host, Lab, NETNS_PREFIX, Router, sweep_leftovers};

/// Everything that can go wrong building or using a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A command ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A command could not be started at all.
    #[error("could not start `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// Labs need root (CAP_NET_ADMIN and CAP_SYS_ADMIN).
    #[error("network labs need root")]
    NotRoot,
    /// A name is empty, too long or has characters other than `a-z0-9-`.
    #[error("bad lab host name {0:?}: use 1-24 characters a-z, 0-9, -")]
    BadName(String),
    /// A requested public address is outside 203.0.113.2-99 or already taken.
    #[error("public host address {0} is outside 203.0.113.2-99 or taken")]
    BadAddress(std::net::Ipv4Addr),
    /// The lab ran out of addresses of a kind.
    #[error("no {0} addresses left")]
    Exhausted(&'static str),
    /// A wait ran out of time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// How long it waited.
        after: Duration,
        /// What it waited for.
        what: String,
    },
    /// The lab agent answered with an error or broke its protocol.
    #[error("lab agent: {0}")]
    Agent(String),
    /// Plain I/O.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Whether this process runs as root (effective UID 0), from `/proc/self/status`.
pub fn is_root() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1))
        .is_some_and(|euid| euid == "0")
}

/// For root-only tests: true when the test may run; otherwise prints a loud SKIP line naming
/// `test` and returns false, so the test can return early.
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    eprintln!("**************************************************************");
    eprintln!("SKIP {test}: network-namespace lab tests need root (CI runs them as root)");
    eprintln!("**************************************************************");
    false
}

/// The path of a binary built by cargo into the same target directory as the running test
/// (`target/<profile>/<name>`), for binaries of other crates (`supernode`, `peerphone`).
/// Tests of this crate use `env!("CARGO_BIN_EXE_<name>")` instead.
pub fn target_binary(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // Test executables live in target/<profile>/deps/, binaries in target/<profile>/.
    let mut dir = exe.parent()?.to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let candidate = dir.join(name);
    candidate.is_file().then_some(candidate)
}
