//! Two real `login-server` processes on one PostgreSQL database: an account made through
//! one logs in through the other; both stop cleanly on SIGTERM / SIGINT.

mod support;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

struct Process {
    child: Child,
    addr: std::net::SocketAddr,
    authority: proto::PublicKey,
}

fn spawn(args: &[&str]) -> Process {
    let mut child = Command::new(env!("CARGO_BIN_EXE_login-server"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn login-server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("listening line");
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
            .to_owned()
    };
    Process {
        addr: field("quic").parse().expect("addr"),
        authority: field("authority").parse().expect("key"),
        child,
    }
}

fn stop(mut process: Process, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &process.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = process.child.try_wait().expect("wait") {
            assert!(status.success(), "exit status {status}");
            return;
        }
        assert!(Instant::now() < deadline, "did not stop within 5 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_postgres_database_serve_the_same_accounts() {
    let Some(pg) = Postgres::get() else {
        return;
    };
    let database = pg.database().await;
    let dir_a = tempfile::tempdir().expect("tempdir");
    let dir_b = tempfile::tempdir().expect("tempdir");
    let a = spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir_a.path().to_str().expect("utf8"),
        "--database",
        &database,
    ]);
    std::fs::copy(
        dir_a.path().join("authority.key"),
        dir_b.path().join("authority.key"),
    )
    .expect("share the authority key");
    // The second process takes its settings from a config file.
    let config = dir_b.path().join("login-server.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata-dir = {:?}\ndatabase = {database:?}\nlog-format = \"json\"\n",
            dir_b.path()
        ),
    )
    .expect("write config");
    let b = spawn(&["--config", config.to_str().expect("utf8")]);
    assert_eq!(a.authority, b.authority);

    let device = Device::new();
    let on_a = device.connect_to(a.addr, a.authority).await;
    let on_b = device.connect_to(b.addr, b.authority).await;
    on_a.register(&user("liz"), &display("Liz"), &password("liz's password"))
        .await
        .expect("register through A");
    let credential = on_b
        .login(&user("liz"), &password("liz's password"))
        .await
        .expect("log in through B");
    on_a.contacts(&credential)
        .await
        .expect("A accepts what B issued");
    on_a.close();
    on_b.close();
    stop(a, "-TERM");
    stop(b, "-INT");
}
