//! Shared test harness: login servers on loopback, devices that talk to them, and
//! databases (SQLite in a temp dir; PostgreSQL from `PEERPHONE_TEST_POSTGRES` or a
//! throwaway cluster started with `initdb`/`pg_ctl`).
#![allow(dead_code)]

use login_server::client::LoginConnection;
use login_server::{LoginServer, ServerConfig};
pub mod scenarios;

use proto::login::Password;
use proto::{DisplayName, PublicKey, SecretKey, UserName};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub fn user(name: &str) -> UserName {
    UserName::new(name).expect("valid user name")
}

pub fn display(name: &str) -> DisplayName {
    DisplayName::new(name).expect("valid display name")
}

pub fn password(p: &str) -> Password {
    Password::new(p).expect("valid password")
}

/// A local-network server config in `dir`, on `database` (None: SQLite in `dir`).
pub fn config(dir: &Path, database: Option<String>) -> ServerConfig {
    let mut config = ServerConfig::local(dir);
    config.database = database;
    config
}

pub async fn start(dir: &Path, database: Option<String>) -> LoginServer {
    LoginServer::start(config(dir, database))
        .await
        .expect("login server starts")
}

/// A device: its own identity key and endpoint.
pub struct Device {
    pub key: SecretKey,
    pub endpoint: transport::Endpoint,
}

impl Device {
    pub fn new() -> Self {
        let key = SecretKey::generate();
        let endpoint = transport::Endpoint::bind("127.0.0.1:0".parse().expect("addr"), &key, None)
            .expect("bind device endpoint");
        Self { key, endpoint }
    }

    pub async fn connect(&self, server: &LoginServer) -> LoginConnection {
        self.connect_to(server.quic_addr(), server.authority_key())
            .await
    }

    pub async fn connect_to(
        &self,
        addr: std::net::SocketAddr,
        authority: PublicKey,
    ) -> LoginConnection {
        LoginConnection::connect(&self.endpoint, addr, authority)
            .await
            .expect("connect to the login server")
    }
}

/// A PostgreSQL server the tests may create databases in.
pub struct Postgres {
    /// URL of the maintenance database (`.../postgres`).
    admin_url: String,
    cluster: Option<Cluster>,
}

struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres_user: bool,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let mut cmd = pg_command(&self.bin.join("pg_ctl"), self.as_postgres_user);
        cmd.arg("-D").arg(&data).args(["-m", "immediate", "stop"]);
        let _ = cmd.output();
    }
}

fn pg_command(program: &Path, as_postgres_user: bool) -> Command {
    if as_postgres_user {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

static DATABASES: AtomicU32 = AtomicU32::new(0);

impl Postgres {
    /// `PEERPHONE_TEST_POSTGRES` when set (then any failure is a test failure); else a
    /// throwaway cluster; else `None`, after saying loudly that PostgreSQL is skipped.
    pub fn get() -> Option<Self> {
        if let Ok(url) = std::env::var("PEERPHONE_TEST_POSTGRES") {
            return Some(Self {
                admin_url: url,
                cluster: None,
            });
        }
        match Self::throwaway() {
            Ok(pg) => Some(pg),
            Err(reason) => {
                eprintln!(
                    "\n!!!!!!!! POSTGRESQL TESTS SKIPPED: PEERPHONE_TEST_POSTGRES is unset and no \
                     throwaway cluster could be started ({reason}) !!!!!!!!\n"
                );
                None
            }
        }
    }

    fn throwaway() -> Result<Self, String> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|e| format!("/usr/lib/postgresql: {e}"))?
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("pg_ctl").exists())
            .max()
            .ok_or("no PostgreSQL binaries")?;
        let as_postgres_user = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let dir = tempfile::Builder::new()
            .prefix("peerphone-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        if as_postgres_user {
            let _ = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status();
        }
        let data = dir.path().join("data");
        let out = pg_command(&bin.join("initdb"), as_postgres_user)
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!("initdb: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let port = free_port();
        let cluster = Cluster {
            dir,
            bin: bin.clone(),
            as_postgres_user,
        };
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            cluster.dir.path().display()
        );
        let out = pg_command(&bin.join("pg_ctl"), as_postgres_user)
            .arg("-D")
            .arg(&data)
            .arg("-o")
            .arg(options)
            .arg("-l")
            .arg(cluster.dir.path().join("log"))
            .args(["-w", "-t", "60", "start"])
            .output()
            .map_err(|e| format!("pg_ctl: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "pg_ctl start: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(Self {
            admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            cluster: Some(cluster),
        })
    }

    /// A fresh, empty database; returns its URL.
    pub async fn database(&self) -> String {
        use sqlx::Connection as _;
        let n = DATABASES.fetch_add(1, Ordering::Relaxed);
        let name = format!("peerphone_test_{}_{n}", std::process::id());
        let mut conn = sqlx::PgConnection::connect(&self.admin_url)
            .await
            .expect("connect to PostgreSQL");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name}"
        )))
        .execute(&mut conn)
        .await
        .expect("drop database");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create database");
        conn.close().await.expect("close");
        let base = self
            .admin_url
            .rsplit_once('/')
            .map(|(base, _)| base)
            .expect("URL has a database path");
        format!("{base}/{name}")
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A clock the test moves by hand (milliseconds since the epoch).
#[derive(Clone)]
pub struct VirtualClock(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl VirtualClock {
    pub fn new() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as u64;
        Self(std::sync::Arc::new(std::sync::atomic::AtomicU64::new(now)))
    }

    pub fn advance_secs(&self, secs: u64) {
        self.0.fetch_add(secs * 1000, Ordering::SeqCst);
    }

    pub fn now(&self) -> proto::UnixTime {
        proto::UnixTime::from_secs(self.0.load(Ordering::SeqCst) / 1000)
    }

    pub fn install(&self, config: &mut ServerConfig) {
        let inner = self.0.clone();
        config.service.clock = std::sync::Arc::new(move || inner.load(Ordering::SeqCst));
    }
}

/// Sends raw bytes on a new stream and returns every byte of the answer.
pub async fn raw_exchange(conn: &transport::Conn, bytes: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (mut send, mut recv) = conn.open_bi().await.expect("open stream");
    send.write_all(bytes).await.expect("write");
    send.shutdown().await.expect("finish");
    let mut answer = Vec::new();
    recv.read_to_end(&mut answer).await.expect("read answer");
    answer
}

/// The frames of a well-formed client request.
pub fn client_frames(request: &proto::login::ClientToLogin) -> Vec<u8> {
    let mut bytes = proto::frame::encode(
        &proto::login::StreamHello::new(proto::login::Role::Client),
        proto::frame::DEFAULT_MAX_FRAME,
    )
    .expect("encode hello");
    bytes.extend(proto::frame::encode(request, proto::frame::DEFAULT_MAX_FRAME).expect("encode"));
    bytes
}

/// Decodes an answer frame.
pub fn decode_answer(bytes: &[u8]) -> proto::login::LoginToClient {
    assert!(bytes.len() >= proto::frame::HEADER_LEN, "no answer frame");
    proto::login::decode_login_to_client(&bytes[proto::frame::HEADER_LEN..]).expect("decodes")
}

/// A raw connection to the server, as a device.
pub async fn raw_conn(device: &Device, server: &LoginServer) -> transport::Conn {
    device
        .endpoint
        .connect(
            server.quic_addr(),
            transport::PeerPolicy::Key(server.authority_key()),
            &transport::Tuning::client(),
        )
        .await
        .expect("connect")
}
