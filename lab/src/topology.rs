//! Namespaces, links, addresses and routes of a lab, and their teardown.

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::process::{Command, Output};
use std::sync::Once;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::time::Duration;

use crate::LabError;
use crate::cmd::{ip, nft, run, sysctl};
use crate::process::LabProcess;
use crate::rules::{NatKind, loss_ruleset, nat_ruleset};

/// Every lab namespace name starts with this, then `<pid>x<seq>-`.
pub const NETNS_PREFIX: &str = "pplab";

static SEQUENCE: AtomicU32 = AtomicU32::new(0);
static SWEEP: Once = Once::new();

/// Deletes namespaces left by lab processes that no longer run (crashed or killed test
/// binaries), killing whatever still runs inside them. Labs of live processes are kept.
pub fn sweep_leftovers() -> Result<usize, LabError> {
    let listing = run("ip", &["netns", "list"])?;
    let mut removed = 0;
    for line in listing.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(NETNS_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('x').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        kill_all_in(name);
        if run("ip", &["netns", "delete", name]).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

fn kill_all_in(netns: &str) {
    if let Ok(pids) = run("ip", &["netns", "pids", netns]) {
        let pids: Vec<&str> = pids.split_whitespace().collect();
        // A process may exit between the listing and the signal: not an error.
        let _ = crate::cmd::kill("KILL", &pids);
    }
}

fn check_name(name: &str) -> Result<(), LabError> {
    let ok = !name.is_empty()
        && name.len() <= 24
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(LabError::BadName(name.to_string()))
    }
}

/// One host: a network namespace with its addresses.
#[derive(Debug, Clone)]
pub struct Host {
    name: String,
    netns: String,
    addrs: Vec<Ipv4Addr>,
}

impl Host {
    /// The name given at creation.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace name (for `ip netns exec`).
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// Its first address.
    pub fn ip(&self) -> Ipv4Addr {
        self.addrs[0]
    }

    /// All its addresses, first one first.
    pub fn addrs(&self) -> &[Ipv4Addr] {
        &self.addrs
    }

    /// A command that runs `program` inside this host. Turn it into a tokio command with
    /// `tokio::process::Command::from`.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .arg("netns")
            .arg("exec")
            .arg(&self.netns)
            .arg(program);
        command
    }

    /// Starts `command` (from [`command`](Self::command)) with captured output; the
    /// process is killed when the handle drops, and at lab teardown at the latest.
    pub fn spawn(&self, command: Command) -> Result<LabProcess, LabError> {
        let program = command
            .get_args()
            .nth(3)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let short = program.rsplit('/').next().unwrap_or(&program).to_string();
        LabProcess::start(format!("{}/{}", self.name, short), command)
    }

    /// Runs `program args…` inside this host to completion, within `timeout`.
    pub fn run(&self, program: &str, args: &[&str], timeout: Duration) -> Result<Output, LabError> {
        let mut command = self.command(program);
        command.args(args);
        let mut process = self.spawn(command)?;
        process.take_stdin();
        let status = process.wait_with_output(timeout)?;
        let mut stdout = process.stdout_lines().join("\n");
        if !stdout.is_empty() {
            stdout.push('\n');
        }
        Ok(Output {
            status,
            stdout: stdout.into_bytes(),
            stderr: process.stderr_text().into_bytes(),
        })
    }
}

/// A NAT router: its own namespace, a `wan` side and a private LAN bridge `lan`.
#[derive(Debug)]
pub struct Router {
    host: Host,
    kind: NatKind,
    wan_ip: Ipv4Addr,
    lan_prefix: [u8; 3],
    next_client: AtomicU8,
}

impl Router {
    /// The router's namespace.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Its NAT behaviour.
    pub fn kind(&self) -> NatKind {
        self.kind
    }

    /// The address of its `wan` side: the public address for a router on the public
    /// segment, an address of the upstream LAN for the inner router of a double NAT.
    pub fn wan_ip(&self) -> Ipv4Addr {
        self.wan_ip
    }

    /// Its own address on its LAN (the clients' gateway).
    pub fn lan_ip(&self) -> Ipv4Addr {
        let [a, b, c] = self.lan_prefix;
        Ipv4Addr::new(a, b, c, 1)
    }

    /// Drops `loss_percent` % of the packets it forwards, both directions (0 to stop).
    pub fn set_loss_percent(&self, loss_percent: u8) -> Result<(), LabError> {
        nft(&self.host.netns, &loss_ruleset("ip", loss_percent))
    }

    /// The router's conntrack table and nft ruleset as text, for failure messages.
    pub fn debug_state(&self) -> String {
        let ruleset = run(
            "ip",
            &["netns", "exec", &self.host.netns, "nft", "list", "ruleset"],
        )
        .unwrap_or_else(|e| e.to_string());
        format!(
            "router {} ({}):\n{ruleset}",
            self.host.name,
            self.kind.name()
        )
    }
}

/// Where a client sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behind {
    /// On the public segment, no NAT.
    Public,
    /// Behind one NAT router.
    Nat(NatKind),
    /// Behind `inner`, whose upstream is a LAN behind `outer` (carrier-grade NAT + home
    /// router).
    DoubleNat {
        /// The router next to the public segment.
        outer: NatKind,
        /// The router next to the client.
        inner: NatKind,
    },
}

/// A client host and the routers in front of it (outermost first).
#[derive(Debug)]
pub struct Client {
    /// The client host.
    pub host: Host,
    /// Its routers, outermost (public side) first; empty for [`Behind::Public`].
    pub routers: Vec<Router>,
}

impl Client {
    /// The outermost router's public address, or the host's own when public.
    pub fn public_ip(&self) -> Ipv4Addr {
        self.routers
            .first()
            .map_or(self.host.ip(), |router| router.wan_ip())
    }
}

/// A set of namespaces: a public segment (bridge `br0` in namespace `<prefix>-inet`,
/// 203.0.113.0/24), public hosts, NAT routers and their clients. Dropping it kills every
/// process inside and deletes every namespace.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    inet: String,
    namespaces: Vec<String>,
    next_port: u32,
    used_public_hosts: std::collections::BTreeSet<u8>,
    next_router: u8,
    next_lan: u8,
}

const PUBLIC_HOSTS_FROM: u8 = 2;
const ROUTERS_FROM: u8 = 100;

impl Lab {
    /// A new empty lab: sweeps leftovers of dead processes (once per process), then creates
    /// the public segment. `label` (a-z, 0-9, -) names it in namespace names.
    pub fn new(label: &str) -> Result<Lab, LabError> {
        check_name(label)?;
        if !crate::is_root() {
            return Err(LabError::NotRoot);
        }
        let mut swept = Ok(0);
        SWEEP.call_once(|| swept = sweep_leftovers());
        swept?;
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{NETNS_PREFIX}{}x{seq}-{label}", std::process::id());
        let mut lab = Lab {
            inet: format!("{prefix}-inet"),
            prefix,
            namespaces: Vec::new(),
            next_port: 0,
            used_public_hosts: std::collections::BTreeSet::new(),
            next_router: ROUTERS_FROM,
            next_lan: 1,
        };
        let inet = lab.inet.clone();
        lab.add_netns(&inet)?;
        ip(&inet, &["link", "add", "br0", "type", "bridge"])?;
        ip(&inet, &["link", "set", "br0", "up"])?;
        Ok(lab)
    }

    /// The namespace-name prefix of this lab.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Every namespace of this lab, the public bridge's first.
    pub fn netns_names(&self) -> &[String] {
        &self.namespaces
    }

    fn add_netns(&mut self, netns: &str) -> Result<(), LabError> {
        run("ip", &["netns", "add", netns])?;
        self.namespaces.push(netns.to_string());
        ip(netns, &["link", "set", "lo", "up"])?;
        // Without IPv6 in the kernel there is nothing to disable.
        if std::path::Path::new("/proc/sys/net/ipv6").exists() {
            sysctl(
                netns,
                &[
                    "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1",
                ],
            )?;
        }
        Ok(())
    }

    fn new_host(&mut self, name: &str) -> Result<String, LabError> {
        check_name(name)?;
        let netns = format!("{}-{name}", self.prefix);
        self.add_netns(&netns)?;
        Ok(netns)
    }

    /// Links `if_name` in `netns` to the public bridge.
    fn attach_public(&mut self, netns: &str, if_name: &str) -> Result<(), LabError> {
        self.next_port += 1;
        let port = format!("p{}", self.next_port);
        let inet = self.inet.clone();
        ip(
            netns,
            &[
                "link", "add", if_name, "type", "veth", "peer", "name", &port, "netns", &inet,
            ],
        )?;
        ip(&inet, &["link", "set", &port, "master", "br0", "up"])?;
        ip(netns, &["link", "set", if_name, "up"])?;
        Ok(())
    }

    /// Links `if_name` in `netns` to `router`'s LAN bridge.
    fn attach_lan(&mut self, router: &Router, netns: &str, if_name: &str) -> Result<(), LabError> {
        self.next_port += 1;
        let port = format!("c{}", self.next_port);
        let rns = router.host.netns.clone();
        ip(
            netns,
            &[
                "link", "add", if_name, "type", "veth", "peer", "name", &port, "netns", &rns,
            ],
        )?;
        ip(&rns, &["link", "set", &port, "master", "lan", "up"])?;
        ip(netns, &["link", "set", if_name, "up"])?;
        Ok(())
    }

    fn public_ip(&mut self) -> Result<Ipv4Addr, LabError> {
        let free = (PUBLIC_HOSTS_FROM..ROUTERS_FROM).find(|h| !self.used_public_hosts.contains(h));
        let host = free.ok_or(LabError::Exhausted("public host"))?;
        self.used_public_hosts.insert(host);
        Ok(Ipv4Addr::new(203, 0, 113, host))
    }

    /// A host on the public segment with `address_count` (at least 1) addresses on one
    /// interface, the lowest free ones from 203.0.113.2: give a supernode 2 for RFC 5780
    /// discovery.
    pub fn public_host(&mut self, name: &str, address_count: usize) -> Result<Host, LabError> {
        let mut addrs = Vec::new();
        for _ in 0..address_count.max(1) {
            addrs.push(self.public_ip()?);
        }
        self.public_host_inner(name, addrs)
    }

    /// A host on the public segment with exactly `addrs` (each in 203.0.113.2-99 and not
    /// yet taken), e.g. a supernode on 203.0.113.10 and .11.
    pub fn public_host_at(&mut self, name: &str, addrs: &[Ipv4Addr]) -> Result<Host, LabError> {
        let mut taken = Vec::new();
        for addr in addrs {
            let [a, b, c, host] = addr.octets();
            let valid = [a, b, c] == [203, 0, 113]
                && (PUBLIC_HOSTS_FROM..ROUTERS_FROM).contains(&host)
                && !self.used_public_hosts.contains(&host);
            if !valid {
                for host in taken {
                    self.used_public_hosts.remove(&host);
                }
                return Err(LabError::BadAddress(*addr));
            }
            self.used_public_hosts.insert(host);
            taken.push(host);
        }
        if addrs.is_empty() {
            return Err(LabError::Exhausted("given public host"));
        }
        self.public_host_inner(name, addrs.to_vec())
    }

    fn public_host_inner(&mut self, name: &str, addrs: Vec<Ipv4Addr>) -> Result<Host, LabError> {
        let netns = self.new_host(name)?;
        self.attach_public(&netns, "eth0")?;
        for addr in &addrs {
            ip(
                &netns,
                &["addr", "add", &format!("{addr}/24"), "dev", "eth0"],
            )?;
        }
        Ok(Host {
            name: name.to_string(),
            netns,
            addrs,
        })
    }

    fn lan_prefix(&mut self) -> Result<[u8; 3], LabError> {
        if self.next_lan == u8::MAX {
            return Err(LabError::Exhausted("private LAN"));
        }
        let prefix = [100, 64, self.next_lan];
        self.next_lan += 1;
        Ok(prefix)
    }

    fn router_common(&mut self, name: &str, kind: NatKind) -> Result<(String, [u8; 3]), LabError> {
        let netns = self.new_host(name)?;
        let lan_prefix = self.lan_prefix()?;
        let [a, b, c] = lan_prefix;
        ip(&netns, &["link", "add", "lan", "type", "bridge"])?;
        ip(
            &netns,
            &["addr", "add", &format!("{a}.{b}.{c}.1/24"), "dev", "lan"],
        )?;
        ip(&netns, &["link", "set", "lan", "up"])?;
        sysctl(&netns, &["net.ipv4.ip_forward=1"])?;
        nft(&netns, &nat_ruleset(kind))?;
        Ok((netns, lan_prefix))
    }

    /// A NAT router of `kind` with a public address on the public segment and a new
    /// private LAN.
    pub fn nat(&mut self, name: &str, kind: NatKind) -> Result<Router, LabError> {
        let (netns, lan_prefix) = self.router_common(name, kind)?;
        self.attach_public(&netns, "wan")?;
        if self.next_router == u8::MAX {
            return Err(LabError::Exhausted("router public"));
        }
        let wan_ip = Ipv4Addr::new(203, 0, 113, self.next_router);
        self.next_router += 1;
        ip(
            &netns,
            &["addr", "add", &format!("{wan_ip}/24"), "dev", "wan"],
        )?;
        Ok(Router {
            host: Host {
                name: name.to_string(),
                netns,
                addrs: vec![wan_ip],
            },
            kind,
            wan_ip,
            lan_prefix,
            next_client: AtomicU8::new(2),
        })
    }

    /// A NAT router of `kind` whose `wan` side is on `upstream`'s LAN (double NAT).
    pub fn nat_behind(
        &mut self,
        name: &str,
        upstream: &Router,
        kind: NatKind,
    ) -> Result<Router, LabError> {
        let (netns, lan_prefix) = self.router_common(name, kind)?;
        self.attach_lan(upstream, &netns, "wan")?;
        let wan_ip = Self::lan_address(upstream)?;
        ip(
            &netns,
            &["addr", "add", &format!("{wan_ip}/24"), "dev", "wan"],
        )?;
        ip(
            &netns,
            &[
                "route",
                "add",
                "default",
                "via",
                &upstream.lan_ip().to_string(),
            ],
        )?;
        Ok(Router {
            host: Host {
                name: name.to_string(),
                netns,
                addrs: vec![wan_ip],
            },
            kind,
            wan_ip,
            lan_prefix,
            next_client: AtomicU8::new(2),
        })
    }

    fn lan_address(router: &Router) -> Result<Ipv4Addr, LabError> {
        let host = router.next_client.fetch_add(1, Ordering::Relaxed);
        if host >= 250 {
            return Err(LabError::Exhausted("LAN host"));
        }
        let [a, b, c] = router.lan_prefix;
        Ok(Ipv4Addr::new(a, b, c, host))
    }

    /// A host on `router`'s LAN whose default route is the router.
    pub fn host_behind(&mut self, name: &str, router: &Router) -> Result<Host, LabError> {
        let netns = self.new_host(name)?;
        self.attach_lan(router, &netns, "eth0")?;
        let addr = Self::lan_address(router)?;
        ip(
            &netns,
            &["addr", "add", &format!("{addr}/24"), "dev", "eth0"],
        )?;
        ip(
            &netns,
            &[
                "route",
                "add",
                "default",
                "via",
                &router.lan_ip().to_string(),
            ],
        )?;
        Ok(Host {
            name: name.to_string(),
            netns,
            addrs: vec![addr],
        })
    }

    /// A client host placed as `behind` says; its routers are named `<name>-nat`,
    /// `<name>-cgn` (outer of a double NAT) and `<name>-home` (inner).
    pub fn client(&mut self, name: &str, behind: Behind) -> Result<Client, LabError> {
        match behind {
            Behind::Public => Ok(Client {
                host: self.public_host(name, 1)?,
                routers: Vec::new(),
            }),
            Behind::Nat(kind) => {
                let router = self.nat(&format!("{name}-nat"), kind)?;
                let host = self.host_behind(name, &router)?;
                Ok(Client {
                    host,
                    routers: vec![router],
                })
            }
            Behind::DoubleNat { outer, inner } => {
                let outer_router = self.nat(&format!("{name}-cgn"), outer)?;
                let inner_router =
                    self.nat_behind(&format!("{name}-home"), &outer_router, inner)?;
                let host = self.host_behind(name, &inner_router)?;
                Ok(Client {
                    host,
                    routers: vec![outer_router, inner_router],
                })
            }
        }
    }

    /// Drops `loss_percent` % of all packets crossing the public segment (0 to stop).
    pub fn set_internet_loss_percent(&self, loss_percent: u8) -> Result<(), LabError> {
        nft(&self.inet, &loss_ruleset("bridge", loss_percent))
    }

    /// Kills every process in the lab and deletes its namespaces, reporting the first
    /// failure (the rest are still attempted).
    pub fn teardown(mut self) -> Result<(), LabError> {
        self.teardown_all()
    }

    fn teardown_all(&mut self) -> Result<(), LabError> {
        for netns in &self.namespaces {
            kill_all_in(netns);
        }
        let mut first_error = None;
        for netns in self.namespaces.drain(..).rev() {
            if let Err(e) = run("ip", &["netns", "delete", &netns]) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.teardown_all() {
            eprintln!("lab {}: teardown failed: {e}", self.prefix);
        }
    }
}
