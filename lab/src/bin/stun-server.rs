//! `stun-server`: a STUN Binding server (RFC 8489) with RFC 5780 behaviour discovery, built
//! on the sans-IO core `nat::stun::server`, for labs where no supernode runs. With
//! `--alternate A2:P2` it binds four sockets (A1:P1, A1:P2, A2:P1, A2:P2). Prints
//! `listening <addr>` per socket, then `ready`, on stdout; runs until killed.
//!
//! Usage: `stun-server --primary A1:P1 [--alternate A2:P2]`

use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{Context, bail};
use nat::stun::server::{LocalSocket, ServerConfig, StunServer};

/// Datagrams waiting for the core; beyond this, readers drop (the core is the bottleneck).
const INBOX_DATAGRAMS: usize = 1024;

fn parse_args() -> anyhow::Result<(SocketAddr, Option<SocketAddr>)> {
    let mut primary = None;
    let mut alternate = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let addr: SocketAddr = value
            .parse()
            .with_context(|| format!("{flag}: bad address {value:?}"))?;
        match flag.as_str() {
            "--primary" => primary = Some(addr),
            "--alternate" => alternate = Some(addr),
            other => bail!("unknown flag {other}"),
        }
    }
    Ok((primary.context("--primary ADDR is required")?, alternate))
}

fn main() {
    let (primary, alternate) = match parse_args() {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("stun-server: {e:#}\nusage: stun-server --primary A1:P1 [--alternate A2:P2]");
            std::process::exit(2);
        }
    };
    if let Err(e) = serve(primary, alternate) {
        eprintln!("stun-server: {e:#}");
        std::process::exit(1);
    }
}

fn serve(primary: SocketAddr, alternate: Option<SocketAddr>) -> anyhow::Result<()> {
    let mut config = ServerConfig::new(primary);
    if let Some(alternate) = alternate {
        config = config.with_alternate(alternate);
    }
    let mut server = StunServer::new(config).context("configuration")?;
    let (inbox, datagrams) =
        mpsc::sync_channel::<(LocalSocket, SocketAddr, Vec<u8>)>(INBOX_DATAGRAMS);
    let mut senders = Vec::new();
    for (which, addr) in server.sockets() {
        let socket = UdpSocket::bind(addr).with_context(|| format!("binding {addr}"))?;
        println!("listening {addr}");
        let reader = socket.try_clone().context("cloning a socket")?;
        senders.push((which, socket));
        let inbox = inbox.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            loop {
                let (len, from) = match reader.recv_from(&mut buf) {
                    Ok(received) => received,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::ConnectionRefused
                                | std::io::ErrorKind::ConnectionReset
                                | std::io::ErrorKind::Interrupted
                        ) =>
                    {
                        continue;
                    }
                    Err(e) => {
                        eprintln!("stun-server: receiving on {addr}: {e}");
                        return;
                    }
                };
                if let Err(mpsc::TrySendError::Disconnected(_)) =
                    inbox.try_send((which, from, buf[..len].to_vec()))
                {
                    return;
                }
            }
        });
    }
    drop(inbox);
    println!("ready");
    for (which, from, payload) in datagrams {
        server.handle_datagram(Instant::now(), which, from, &payload);
        while let Some(transmit) = server.poll_transmit() {
            if let Some((_, socket)) = senders.iter().find(|(s, _)| *s == transmit.from) {
                // A lost answer is what the client's retransmissions are for.
                let _ = socket.send_to(&transmit.payload, transmit.destination);
            }
        }
    }
    Ok(())
}
