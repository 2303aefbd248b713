//! The `impair-proxy` binary on loopback: datagrams through it to an echo socket come back
//! with the configured loss and delay, each client gets its own mapping, the mapping table
//! is bounded, bad specs are usage errors and SIGTERM stops it cleanly.
#![cfg(feature = "proxy")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const PROXY: &str = env!("CARGO_BIN_EXE_impair-proxy");

/// A running proxy; killed when dropped.
struct Proxy {
    child: Child,
    stdout: BufReader<ChildStdout>,
    addr: SocketAddr,
}

impl Proxy {
    fn start(upstream: SocketAddr, extra_args: &[&str]) -> Self {
        let mut child = Command::new(PROXY)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                &upstream.to_string(),
            ])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn impair-proxy");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read the first line");
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("first line must be `listening ADDR`, got {line:?}"));
        Self {
            child,
            stdout,
            addr,
        }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Waits up to `timeout` for the process to exit.
    fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A UDP echo socket on a thread; it also records the source address of each datagram.
struct Echo {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<SocketAddr>>>,
}

impl Echo {
    fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind echo");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let addr = socket.local_addr().expect("echo addr");
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut sources = Vec::new();
            let mut buf = [0u8; 2048];
            while !stop_flag.load(Ordering::Relaxed) {
                if let Ok((len, from)) = socket.recv_from(&mut buf) {
                    sources.push(from);
                    let _ = socket.send_to(&buf[..len], from);
                }
            }
            sources
        });
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the echo and returns the source of every datagram it saw.
    fn finish(mut self) -> Vec<SocketAddr> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().expect("echo thread"))
            .unwrap_or_default()
    }
}

fn client(read_timeout: Duration) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind client");
    socket
        .set_read_timeout(Some(read_timeout))
        .expect("read timeout");
    socket
}

#[test]
fn loss_and_delay_through_the_proxy_match_the_specs() {
    let echo = Echo::start();
    let proxy = Proxy::start(
        echo.addr,
        &[
            "--impair",
            "loss=10%,delay=30ms,jitter=10ms",
            "--impair-return",
            "loss=5%,delay=5ms",
            "--seed",
            "7",
        ],
    );
    let socket = client(Duration::from_millis(400));
    let rounds = 10u32;
    let per_round = 100u32;
    let mut sent_at = BTreeMap::new();
    let mut rtts = BTreeMap::new();
    let mut buf = [0u8; 64];
    for round in 0..rounds {
        // Rounds keep the datagrams in flight well below the loopback socket buffers.
        for i in 0..per_round {
            let seq = round * per_round + i;
            socket
                .send_to(&seq.to_be_bytes(), proxy.addr)
                .expect("send to proxy");
            sent_at.insert(seq, Instant::now());
        }
        let mut got = 0;
        while got < per_round {
            let Ok((len, from)) = socket.recv_from(&mut buf) else {
                break; // the rest of this round was lost
            };
            assert_eq!(from, proxy.addr, "replies must come from the proxy address");
            let seq = u32::from_be_bytes(buf[..len].try_into().expect("4-byte datagram"));
            let rtt = sent_at[&seq].elapsed();
            assert!(
                rtts.insert(seq, rtt).is_none(),
                "datagram {seq} came back twice"
            );
            got += 1;
        }
    }
    let offered = f64::from(rounds * per_round);
    let received_share = rtts.len() as f64 / offered;
    // Expected 0.9 * 0.95 = 0.855; the standard deviation is about 0.011.
    assert!(
        (0.78..=0.93).contains(&received_share),
        "{} of {offered} came back",
        rtts.len()
    );
    let min_rtt = rtts.values().min().copied().unwrap_or_default();
    assert!(
        min_rtt >= Duration::from_millis(35),
        "a datagram came back in {min_rtt:?}, faster than the 30 + 5 ms configured"
    );
    let mut sorted: Vec<Duration> = rtts.values().copied().collect();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    eprintln!(
        "received {received_share:.3} (expected 0.855), min RTT {min_rtt:?}, median RTT {median:?}"
    );
    // 35 ms + up to 10 ms of jitter, plus generous slack for a loaded machine.
    assert!(median < Duration::from_millis(150), "median RTT {median:?}");
    drop(proxy);
    let sources = echo.finish();
    assert!(!sources.is_empty());
}

#[test]
fn each_client_gets_its_own_mapping_and_replies() {
    let echo = Echo::start();
    let proxy = Proxy::start(echo.addr, &[]);
    let clients = [
        client(Duration::from_secs(5)),
        client(Duration::from_secs(5)),
    ];
    let mut buf = [0u8; 64];
    for round in 0..3u8 {
        for (n, socket) in clients.iter().enumerate() {
            let payload = [n as u8, round];
            socket.send_to(&payload, proxy.addr).expect("send");
            let (len, from) = socket.recv_from(&mut buf).expect("echo reply");
            assert_eq!((&buf[..len], from), (&payload[..], proxy.addr));
        }
    }
    drop(proxy);
    let sources = echo.finish();
    let distinct: std::collections::BTreeSet<SocketAddr> = sources.iter().copied().collect();
    assert_eq!(sources.len(), 6);
    assert_eq!(
        distinct.len(),
        2,
        "one upstream socket per client: {sources:?}"
    );
}

#[test]
fn mapping_table_is_bounded_and_idle_mappings_expire() {
    let echo = Echo::start();
    let proxy = Proxy::start(
        echo.addr,
        &["--max-clients", "1", "--idle-timeout-millis", "1000"],
    );
    let first = client(Duration::from_secs(5));
    let second = client(Duration::from_millis(200));
    let mut buf = [0u8; 16];
    first.send_to(b"a", proxy.addr).expect("send");
    assert_eq!(first.recv_from(&mut buf).expect("reply").0, 1);
    // The table is full while the first mapping is fresh.
    second.send_to(b"b", proxy.addr).expect("send");
    assert!(
        second.recv_from(&mut buf).is_err(),
        "a second client must be refused while the table is full"
    );
    // Once the first mapping idles out, the second client gets one.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut answered = false;
    while !answered && Instant::now() < deadline {
        second.send_to(b"b", proxy.addr).expect("send");
        answered = second.recv_from(&mut buf).is_ok();
    }
    assert!(answered, "the idle mapping never expired");
    drop(proxy);
    echo.finish();
}

#[test]
fn bad_spec_is_a_usage_error_naming_the_problem() {
    let output = Command::new(PROXY)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:9",
            "--impair",
            "loss=5",
        ])
        .output()
        .expect("run impair-proxy");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("percentage"), "stderr: {stderr}");
}

#[test]
fn sigterm_stops_it_cleanly_with_stats() {
    let echo = Echo::start();
    let mut proxy = Proxy::start(echo.addr, &["--impair", "delay=1ms"]);
    let socket = client(Duration::from_secs(5));
    let mut buf = [0u8; 16];
    socket.send_to(b"x", proxy.addr).expect("send");
    socket.recv_from(&mut buf).expect("echo reply");
    let status = Command::new("kill")
        .args(["-TERM", &proxy.pid()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let exit = proxy
        .wait_exit(Duration::from_secs(5))
        .expect("proxy must exit within 5 s of SIGTERM");
    assert!(exit.success(), "exit status {exit:?}");
    let mut rest = String::new();
    proxy.stdout.read_to_string(&mut rest).expect("read stdout");
    assert!(
        rest.contains("stats direction=forward offered=1 dropped=0"),
        "stdout: {rest}"
    );
    assert!(
        rest.contains("stats direction=return offered=1 dropped=0"),
        "stdout: {rest}"
    );
    echo.finish();
}
