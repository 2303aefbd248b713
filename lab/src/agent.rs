//! Remote control of the `lab-agent` helper binary inside a lab host: plain UDP (and a
//! little TCP) driven from the test process, one JSON request and one JSON response per
//! line over the agent's stdin and stdout.
//!
//! A socket in reflector mode answers every datagram with `"<source> <local>"`: the address
//! it saw the datagram come from and the address it arrived on. That is how tests measure
//! NAT mappings without STUN. Does not: speak STUN, or run anything on its own.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ChildStdin;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Host, LabError, LabProcess};

/// A request to the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Bind a UDP socket; answers `sock` and `local`.
    Bind {
        /// Address to bind.
        addr: SocketAddr,
    },
    /// Send `data` from socket `sock` to `to`.
    Send {
        /// Socket number from `Bind`.
        sock: usize,
        /// Destination.
        to: SocketAddr,
        /// Payload text.
        data: String,
    },
    /// Wait up to `timeout_ms` for one datagram on `sock`; answers `from` and `data`, or
    /// `ok: false` with error `timeout`.
    Recv {
        /// Socket number.
        sock: usize,
        /// How long to wait.
        timeout_ms: u64,
    },
    /// Answer every datagram on `sock` with `"<source> <local>"`, from a thread.
    Reflect {
        /// Socket number.
        sock: usize,
    },
    /// Open a TCP connection to `to` and read one line from it; answers `data`.
    TcpConnect {
        /// Destination.
        to: SocketAddr,
        /// Connect and read timeout.
        timeout_ms: u64,
    },
    /// Listen on TCP; every accepted connection gets `"<source> <local>\n"`, then closes.
    TcpReflect {
        /// Address to listen on.
        addr: SocketAddr,
    },
}

/// The agent's answer to one request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// Whether the request succeeded.
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A new socket's number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sock: Option<usize>,
    /// A new socket's local address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<SocketAddr>,
    /// Where a datagram came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<SocketAddr>,
    /// Received text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// A reflector's answer, parsed: where it saw us, and where it was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reflection {
    /// The datagram's source as the reflector saw it (our mapped address).
    pub seen_from: SocketAddr,
    /// The reflector address it arrived on.
    pub reached: SocketAddr,
}

impl Reflection {
    /// Parses `"<source> <local>"`.
    pub fn parse(text: &str) -> Option<Reflection> {
        let mut parts = text.split_whitespace();
        let seen_from = parts.next()?.parse().ok()?;
        let reached = parts.next()?.parse().ok()?;
        Some(Reflection { seen_from, reached })
    }
}

/// A socket inside an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SocketId(pub usize);

/// Slack on top of a request's own timeout before the agent counts as hung.
const AGENT_SLACK: Duration = Duration::from_secs(5);

/// A running `lab-agent` in a host. Dropping it kills the agent.
#[derive(Debug)]
pub struct Agent {
    process: LabProcess,
    stdin: ChildStdin,
}

impl Agent {
    /// Starts the agent binary at `binary` inside `host` and waits for its ready line.
    pub fn start(host: &Host, binary: &Path) -> Result<Agent, LabError> {
        let mut process = host.spawn(host.command(binary))?;
        let stdin = process
            .take_stdin()
            .ok_or_else(|| LabError::Agent("no stdin".into()))?;
        process.wait_for_stdout(Duration::from_secs(10), |line| line == "ready")?;
        Ok(Agent { process, stdin })
    }

    fn call(&mut self, request: &Request, timeout: Duration) -> Result<Response, LabError> {
        let line = serde_json::to_string(request)
            .map_err(|e| LabError::Agent(format!("encoding a request: {e}")))?;
        writeln!(self.stdin, "{line}")?;
        self.stdin.flush()?;
        let answer = self
            .process
            .next_line(timeout + AGENT_SLACK)?
            .ok_or_else(|| {
                LabError::Agent(format!(
                    "{} exited; stderr:\n{}",
                    self.process.label(),
                    self.process.stderr_text()
                ))
            })?;
        serde_json::from_str(&answer)
            .map_err(|e| LabError::Agent(format!("bad response {answer:?}: {e}")))
    }

    fn expect_ok(&mut self, request: &Request) -> Result<Response, LabError> {
        let response = self.call(request, Duration::ZERO)?;
        if response.ok {
            Ok(response)
        } else {
            Err(LabError::Agent(format!(
                "{request:?} failed: {}",
                response.error.unwrap_or_default()
            )))
        }
    }

    /// Binds a UDP socket.
    pub fn bind(&mut self, addr: SocketAddr) -> Result<(SocketId, SocketAddr), LabError> {
        let response = self.expect_ok(&Request::Bind { addr })?;
        match (response.sock, response.local) {
            (Some(sock), Some(local)) => Ok((SocketId(sock), local)),
            _ => Err(LabError::Agent("bind answer without socket".into())),
        }
    }

    /// Sends `data` from `sock` to `to`.
    pub fn send(&mut self, sock: SocketId, to: SocketAddr, data: &str) -> Result<(), LabError> {
        self.expect_ok(&Request::Send {
            sock: sock.0,
            to,
            data: data.to_string(),
        })
        .map(|_| ())
    }

    /// The next datagram on `sock` within `timeout`, or `None`.
    pub fn recv(
        &mut self,
        sock: SocketId,
        timeout: Duration,
    ) -> Result<Option<(SocketAddr, String)>, LabError> {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let response = self.call(
            &Request::Recv {
                sock: sock.0,
                timeout_ms,
            },
            timeout,
        )?;
        match response {
            Response {
                ok: true,
                from: Some(from),
                data: Some(data),
                ..
            } => Ok(Some((from, data))),
            Response {
                ok: false, error, ..
            } if error.as_deref() == Some("timeout") => Ok(None),
            other => Err(LabError::Agent(format!("recv failed: {other:?}"))),
        }
    }

    /// Turns `sock` into a reflector (it can still [`send`](Self::send), not receive).
    pub fn reflect(&mut self, sock: SocketId) -> Result<(), LabError> {
        self.expect_ok(&Request::Reflect { sock: sock.0 })
            .map(|_| ())
    }

    /// Asks the reflector at `reflector` how it sees `sock`, trying `attempts` times with
    /// `timeout` each (answers from anyone but `reflector` are skipped).
    pub fn reflect_via(
        &mut self,
        sock: SocketId,
        reflector: SocketAddr,
        attempts: u32,
        timeout: Duration,
    ) -> Result<Option<Reflection>, LabError> {
        for _ in 0..attempts {
            self.send(sock, reflector, "probe")?;
            while let Some((from, data)) = self.recv(sock, timeout)? {
                if from == reflector
                    && let Some(reflection) = Reflection::parse(&data)
                {
                    return Ok(Some(reflection));
                }
            }
        }
        Ok(None)
    }

    /// Opens a TCP connection and reads one line; `Ok(None)` if it cannot connect in time.
    pub fn tcp_connect(
        &mut self,
        to: SocketAddr,
        timeout: Duration,
    ) -> Result<Option<String>, LabError> {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let response = self.call(&Request::TcpConnect { to, timeout_ms }, timeout * 2)?;
        Ok(if response.ok { response.data } else { None })
    }

    /// Starts a TCP reflector on `addr`.
    pub fn tcp_reflect(&mut self, addr: SocketAddr) -> Result<SocketAddr, LabError> {
        let response = self.expect_ok(&Request::TcpReflect { addr })?;
        response
            .local
            .ok_or_else(|| LabError::Agent("tcp_reflect answer without address".into()))
    }

    /// The agent's stderr so far, for failure messages.
    pub fn stderr_text(&self) -> String {
        self.process.stderr_text()
    }
}
