//! Login-server benchmark: password logins per second and p50/p99 latency of
//! non-password requests (buddy list, lookup), over QUIC on loopback, in one process.
//!
//! `cargo run --release -p login-server --example login_bench -- [DATABASE_URL]`
//! (default: SQLite in a temp dir). Prints one markdown table row set; `bench/login.sh`
//! runs it on SQLite and PostgreSQL. The baseline is one argon2id verification on one
//! core, measured in the same run: the ceiling for logins per core.

use login_server::client::LoginConnection;
use login_server::{LoginServer, ServerConfig};
use proto::login::{Password, UserRequest};
use proto::{DisplayName, SecretKey, UserName};
use std::time::{Duration, Instant};

const USERS: usize = 40;
const LOGIN_CLIENTS: usize = 8;
const LOGIN_SECONDS: u64 = 8;
const CHEAP_REQUESTS: usize = 2000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

async fn device(server: &LoginServer) -> (transport::Endpoint, LoginConnection) {
    let key = SecretKey::generate();
    let endpoint =
        transport::Endpoint::bind("127.0.0.1:0".parse().expect("addr"), &key, None).expect("bind");
    let conn = LoginConnection::connect(&endpoint, server.quic_addr(), server.authority_key())
        .await
        .expect("connect");
    (endpoint, conn)
}

#[tokio::main]
async fn main() {
    let database = std::env::args().nth(1);
    let engine = match &database {
        Some(url) if url.starts_with("postgres") => "PostgreSQL",
        _ => "SQLite",
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = ServerConfig::local(dir.path());
    config.database = database;
    config.service.registrations_per_hour = 100_000;
    let server = LoginServer::start(config).await.expect("start");
    let pw = Password::new("benchmark password").expect("password");

    // Baseline: argon2id verification alone, one core.
    let hasher = login_server::password::Hasher::new(1).expect("hasher");
    let hash = hasher.hash(pw.expose()).await.expect("hash");
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(3) {
        assert!(
            hasher
                .verify(pw.expose(), Some(&hash))
                .await
                .expect("verify")
        );
        n += 1;
    }
    let baseline = n as f64 / started.elapsed().as_secs_f64();

    let (_e, setup) = device(&server).await;
    for i in 0..USERS {
        let name = UserName::new(format!("user{i}")).expect("name");
        setup
            .register(
                &name,
                &DisplayName::new(format!("User {i}")).expect("display"),
                &pw,
            )
            .await
            .expect("register");
    }

    // Password logins: LOGIN_CLIENTS concurrent devices, each its own account (so the
    // per-account throttle is never involved), for LOGIN_SECONDS.
    let deadline = Instant::now() + Duration::from_secs(LOGIN_SECONDS);
    let mut tasks = Vec::new();
    for c in 0..LOGIN_CLIENTS {
        let (endpoint, conn) = device(&server).await;
        let pw = pw.clone();
        tasks.push(tokio::spawn(async move {
            let _endpoint = endpoint;
            let name = UserName::new(format!("user{c}")).expect("name");
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                conn.login(&name, &pw).await.expect("login");
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let started = Instant::now();
    let mut login_latencies = Vec::new();
    for t in tasks {
        login_latencies.extend(t.await.expect("task"));
    }
    let logins_per_sec = login_latencies.len() as f64 / started.elapsed().as_secs_f64();
    login_latencies.sort();

    // Unknown user vs wrong password: same cost (mean over 20 each, alternating).
    let (_e2, probe) = device(&server).await;
    let (mut unknown, mut wrong) = (Duration::ZERO, Duration::ZERO);
    let bad = Password::new("wrong password").expect("password");
    for i in 0..8 {
        let t = Instant::now();
        let _ = probe
            .login(&UserName::new(format!("ghost{i}")).expect("name"), &bad)
            .await;
        unknown += t.elapsed();
        let t = Instant::now();
        let _ = probe
            .login(
                &UserName::new(format!("user{}", 20 + i)).expect("name"),
                &bad,
            )
            .await;
        wrong += t.elapsed();
    }

    // Non-password requests on one connection, sequential: contacts list and lookup.
    let (_e3, conn) = device(&server).await;
    let me = UserName::new("user39").expect("name");
    let cred = conn.login(&me, &pw).await.expect("login");
    for i in 0..10 {
        conn.contact_change(
            &cred,
            UserRequest::AddContact {
                user: UserName::new(format!("user{i}")).expect("name"),
            },
        )
        .await
        .expect("add");
    }
    let mut list = Vec::with_capacity(CHEAP_REQUESTS);
    let mut lookup = Vec::with_capacity(CHEAP_REQUESTS);
    for i in 0..CHEAP_REQUESTS {
        let t = Instant::now();
        conn.contacts(&cred).await.expect("contacts");
        list.push(t.elapsed());
        let t = Instant::now();
        conn.lookup(
            &cred,
            &UserName::new(format!("user{}", i % USERS)).expect("name"),
        )
        .await
        .expect("lookup");
        lookup.push(t.elapsed());
    }
    list.sort();
    lookup.sort();

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("| engine | measure | value |");
    println!("| --- | --- | --- |");
    println!("| {engine} | baseline: argon2id verify alone, 1 core | {baseline:.1} /s |");
    println!(
        "| {engine} | password logins ({LOGIN_CLIENTS} clients, {cores} cores) | {logins_per_sec:.1} /s |"
    );
    println!(
        "| {engine} | login latency p50 / p99 | {} / {} ms |",
        ms(percentile(&login_latencies, 0.5)),
        ms(percentile(&login_latencies, 0.99))
    );
    println!(
        "| {engine} | unknown user / wrong password, mean of 8 | {} / {} ms |",
        ms(unknown / 8),
        ms(wrong / 8)
    );
    println!(
        "| {engine} | buddy list p50 / p99 ({CHEAP_REQUESTS} requests) | {} / {} ms |",
        ms(percentile(&list, 0.5)),
        ms(percentile(&list, 0.99))
    );
    println!(
        "| {engine} | lookup p50 / p99 ({CHEAP_REQUESTS} requests) | {} / {} ms |",
        ms(percentile(&lookup, 0.5)),
        ms(percentile(&lookup, 0.99))
    );
    server.shutdown().await;
}
