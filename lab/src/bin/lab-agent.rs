//! `lab-agent`: runs inside a lab host and executes the UDP/TCP requests of
//! [`lab::agent`] read as JSON lines on stdin, answering one JSON line each on stdout.
//! Prints `ready` first. Exits when stdin closes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use lab::agent::{Request, Response};

struct UdpEntry {
    socket: UdpSocket,
    reflecting: bool,
}

fn error(message: impl Into<String>) -> Response {
    Response {
        ok: false,
        error: Some(message.into()),
        ..Response::default()
    }
}

fn ok() -> Response {
    Response {
        ok: true,
        ..Response::default()
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::Interrupted
    )
}

fn reflect_loop(socket: UdpSocket) {
    let local = socket
        .local_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let mut buf = [0u8; 2048];
    loop {
        let from = match socket.recv_from(&mut buf) {
            Ok((_, from)) => from,
            // ICMP errors of earlier sends surface here on some kernels: not fatal.
            Err(e) if is_transient(&e) => continue,
            Err(_) => return,
        };
        let answer = format!("{from} {local}");
        let _ = socket.send_to(answer.as_bytes(), from);
    }
}

fn tcp_reflect_loop(listener: TcpListener) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let (Ok(peer), Ok(local)) = (stream.peer_addr(), stream.local_addr()) else {
            continue;
        };
        let _ = writeln!(stream, "{peer} {local}");
    }
}

fn tcp_connect(to: SocketAddr, timeout: Duration) -> Response {
    let mut stream = match TcpStream::connect_timeout(&to, timeout) {
        Ok(stream) => stream,
        Err(e) => return error(format!("connect: {e}")),
    };
    if let Err(e) = stream.set_read_timeout(Some(timeout)) {
        return error(e.to_string());
    }
    let mut text = String::new();
    let mut byte = [0u8; 1];
    while text.len() < 1024 {
        match stream.read(&mut byte) {
            Ok(1) if byte[0] != b'\n' => text.push(char::from(byte[0])),
            Ok(_) => break,
            Err(e) => return error(format!("read: {e}")),
        }
    }
    Response {
        ok: true,
        data: Some(text),
        ..Response::default()
    }
}

fn handle(sockets: &mut Vec<UdpEntry>, request: Request) -> Response {
    match request {
        Request::Bind { addr } => match UdpSocket::bind(addr) {
            Ok(socket) => {
                let local = socket.local_addr().ok();
                sockets.push(UdpEntry {
                    socket,
                    reflecting: false,
                });
                Response {
                    ok: true,
                    sock: Some(sockets.len() - 1),
                    local,
                    ..Response::default()
                }
            }
            Err(e) => error(format!("bind {addr}: {e}")),
        },
        Request::Send { sock, to, data } => match sockets.get(sock) {
            Some(entry) => match entry.socket.send_to(data.as_bytes(), to) {
                Ok(_) => ok(),
                Err(e) => error(format!("send to {to}: {e}")),
            },
            None => error("no such socket"),
        },
        Request::Recv { sock, timeout_ms } => {
            let Some(entry) = sockets.get(sock) else {
                return error("no such socket");
            };
            if entry.reflecting {
                return error("socket is reflecting");
            }
            let timeout = Duration::from_millis(timeout_ms.max(1));
            if let Err(e) = entry.socket.set_read_timeout(Some(timeout)) {
                return error(e.to_string());
            }
            let mut buf = [0u8; 2048];
            match entry.socket.recv_from(&mut buf) {
                Ok((len, from)) => Response {
                    ok: true,
                    from: Some(from),
                    data: Some(String::from_utf8_lossy(&buf[..len]).into_owned()),
                    ..Response::default()
                },
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    error("timeout")
                }
                Err(e) => error(format!("recv: {e}")),
            }
        }
        Request::Reflect { sock } => {
            let Some(entry) = sockets.get_mut(sock) else {
                return error("no such socket");
            };
            match entry.socket.try_clone() {
                Ok(clone) => {
                    if let Err(e) = clone.set_read_timeout(None) {
                        return error(e.to_string());
                    }
                    entry.reflecting = true;
                    std::thread::spawn(move || reflect_loop(clone));
                    ok()
                }
                Err(e) => error(e.to_string()),
            }
        }
        Request::TcpConnect { to, timeout_ms } => {
            tcp_connect(to, Duration::from_millis(timeout_ms.max(1)))
        }
        Request::TcpReflect { addr } => match TcpListener::bind(addr) {
            Ok(listener) => {
                let local = listener.local_addr().ok();
                std::thread::spawn(move || tcp_reflect_loop(listener));
                Response {
                    ok: true,
                    local,
                    ..Response::default()
                }
            }
            Err(e) => error(format!("listen {addr}: {e}")),
        },
    }
}

fn main() {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if writeln!(out, "ready").and_then(|_| out.flush()).is_err() {
        return;
    }
    let mut sockets = Vec::new();
    for line in BufReader::new(std::io::stdin()).lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let response = match serde_json::from_str::<Request>(&line) {
            Ok(request) => handle(&mut sockets, request),
            Err(e) => error(format!("bad request: {e}")),
        };
        let text = serde_json::to_string(&response)
            .unwrap_or_else(|_| r#"{"ok":false,"error":"encoding"}"#.to_string());
        if writeln!(out, "{text}").and_then(|_| out.flush()).is_err() {
            break;
        }
    }
}
