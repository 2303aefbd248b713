//! A network for process tests: a login server and supernodes in this process, and the real
//! `peerphone` binary run as separate processes against them.
#![allow(dead_code)]

use login_server::LoginServer;
use login_server::config::ServerConfig;
use serde_json::Value;
use std::f64::consts::PI;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use supernode::shell::{RunningSupernode, ShellConfig};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// Generous: debug builds on a loaded machine.
pub const WAIT: Duration = Duration::from_secs(60);
pub const PASSWORD: &str = "correct horse battery staple";

pub struct Net {
    pub dir: tempfile::TempDir,
    pub login: LoginServer,
    pub supernodes: Vec<RunningSupernode>,
}

impl Net {
    pub async fn start(supernodes: usize) -> Net {
        Self::start_with(supernodes, |_| {}).await
    }

    /// With a login-server configuration of the test's own.
    pub async fn start_with(supernodes: usize, adjust: impl FnOnce(&mut ServerConfig)) -> Net {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = ServerConfig::local(dir.path().join("login"));
        adjust(&mut config);
        let login = LoginServer::start(config).await.expect("login server");
        let base = 42_000 + (std::process::id() % 100) as u16 * 40;
        let mut running = Vec::new();
        for i in 0..supernodes {
            let mut config = supernode_config(&login, dir.path().join(format!("sn{i}")));
            config.turn_listen = Some("127.0.0.1:0".parse().expect("addr"));
            let low = base + i as u16 * 20;
            config.relay_ports = Some(low..=low + 19);
            config.allow_relay_to = vec!["127.0.0.0/8".parse().expect("cidr")];
            config.directory_poll = Duration::from_millis(300);
            config.revocation_poll = Duration::from_secs(1);
            config.heartbeat = Duration::from_secs(2);
            running.push(
                RunningSupernode::start(config)
                    .await
                    .expect("supernode starts"),
            );
        }
        Net {
            dir,
            login,
            supernodes: running,
        }
    }

    pub fn peer(&self, name: &str) -> Peer {
        Peer::new(&self.login, self.dir.path(), name)
    }

    /// Another profile (another device) under its own label; log it in as any user.
    pub fn device(&self, label: &str) -> Peer {
        self.peer(label)
    }

    pub async fn stop(self) {
        for supernode in self.supernodes {
            supernode.shutdown().await;
        }
        self.login.shutdown().await;
    }
}

/// A login server with the local defaults, its data under `dir/login`.
pub async fn start_login(dir: &Path) -> LoginServer {
    LoginServer::start(ServerConfig::local(dir.join("login")))
        .await
        .expect("login server")
}

/// A supernode configuration for `login`, its data in `data_dir`, its QUIC port on
/// loopback; everything else at its defaults.
pub fn supernode_config(login: &LoginServer, data_dir: PathBuf) -> ShellConfig {
    let mut config = ShellConfig::new(login.quic_addr(), login.authority_key(), data_dir);
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config
}

/// One user's profile, driven through the CLI.
#[derive(Debug, Clone)]
pub struct Peer {
    pub name: String,
    pub profile: PathBuf,
    login: String,
    authority: String,
    /// Environment variables set for each of its commands.
    env: Vec<(String, String)>,
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Finished {
    pub code: Option<i32>,
    pub lines: Vec<Value>,
    pub stderr: String,
}

impl Peer {
    /// A profile `profile-NAME` in `dir`, against `login`.
    pub fn new(login: &LoginServer, dir: &Path, name: &str) -> Peer {
        Peer {
            name: name.to_owned(),
            profile: dir.join(format!("profile-{name}")),
            login: login.quic_addr().to_string(),
            authority: login.authority_key().to_string(),
            env: Vec::new(),
        }
    }

    /// The same profile with `key=value` in its commands' environment.
    pub fn with_env(mut self, key: &str, value: &str) -> Peer {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_peerphone"));
        command
            .arg("--profile")
            .arg(&self.profile)
            .args(["--login-server", &self.login])
            .args(["--authority-key", &self.authority])
            .arg("--json")
            .args(args)
            .env("PEERPHONE_PASSWORD", PASSWORD)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "app=debug,warn")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Runs a command to its end.
    pub async fn run(&self, args: &[&str]) -> Finished {
        let output = tokio::time::timeout(WAIT, self.command(args).output())
            .await
            .unwrap_or_else(|_| panic!("{} {args:?} did not finish in time", self.name))
            .expect("run peerphone");
        let stdout = String::from_utf8_lossy(&output.stdout);
        Finished {
            code: output.status.code(),
            lines: stdout
                .lines()
                .map(|l| {
                    serde_json::from_str(l)
                        .unwrap_or_else(|e| panic!("stdout line {l:?} is not JSON: {e}"))
                })
                .collect(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs a command that must succeed; its JSON lines.
    pub async fn ok(&self, args: &[&str]) -> Vec<Value> {
        let finished = self.run(args).await;
        assert_eq!(
            finished.code,
            Some(0),
            "{} {args:?} failed: {}\n{:?}",
            self.name,
            finished.stderr,
            finished.lines
        );
        finished.lines
    }

    /// Starts a long-running command.
    pub fn spawn(&self, args: &[&str]) -> Running {
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn peerphone");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::unbounded_channel();
        let name = self.name.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[{name}] {line}");
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout line {line:?} is not JSON: {e}"));
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        Running {
            name: self.name.clone(),
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }
}

/// A running `peerphone` process and the JSON lines it printed.
pub struct Running {
    pub name: String,
    child: Child,
    lines: mpsc::UnboundedReceiver<Value>,
    pub seen: Vec<Value>,
}

impl Running {
    /// Waits for a line matching `pred` (also among lines seen earlier and not yet matched).
    pub async fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.seen.iter().position(&pred) {
            return self.seen.remove(i);
        }
        let wait = async {
            loop {
                match self.lines.recv().await {
                    Some(line) if pred(&line) => return line,
                    Some(line) => self.seen.push(line),
                    None => panic!("{} exited before {what}", self.name),
                }
            }
        };
        tokio::time::timeout(WAIT, wait)
            .await
            .unwrap_or_else(|_| panic!("{}: no {what} in time; saw {:?}", self.name, self.seen))
    }

    /// Waits for an event by name with the given field values.
    pub async fn wait_event(&mut self, event: &str, fields: &[(&str, &str)]) -> Value {
        let what = format!("{event} {fields:?}");
        self.wait_for(&what, |v| {
            v["event"] == event && fields.iter().all(|(k, val)| v[*k] == *val)
        })
        .await
    }

    /// Waits for `call_held` and then `call_resumed` for `call_id`: the other side held
    /// the call and resumed it.
    pub async fn wait_held_then_resumed(&mut self, call_id: &str) -> (Value, Value) {
        let held = self.wait_event("call_held", &[("call_id", call_id)]).await;
        let resumed = self
            .wait_event("call_resumed", &[("call_id", call_id)])
            .await;
        (held, resumed)
    }

    /// SIGTERM; must exit 0 within 5 s.
    pub async fn stop(mut self) {
        let pid = self.child.id().expect("running").to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("kill");
        assert!(status.success());
        let status = tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not stop within 5 s", self.name))
            .expect("wait");
        assert!(status.success(), "{} exited with {status}", self.name);
    }

    /// Waits for the process to exit by itself; its exit code.
    pub async fn finish(mut self) -> (Option<i32>, Vec<Value>) {
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not finish in time", self.name))
            .expect("wait");
        let mut lines = self.seen;
        // The reader task ends at the end of stdout.
        while let Ok(Some(line)) = tokio::time::timeout(WAIT, self.lines.recv()).await {
            lines.push(line);
        }
        (status.code(), lines)
    }
}

// ---- WAV files for call tests ----

pub const RATE: u32 = 48_000;

/// A 16-bit mono WAV of a sine tone.
pub fn write_tone(path: &Path, freq_hz: f64, seconds: f64) {
    let samples = (f64::from(RATE) * seconds) as usize;
    let tone: Vec<f64> = (0..samples)
        .map(|n| 0.5 * (2.0 * PI * freq_hz * n as f64 / f64::from(RATE)).sin())
        .collect();
    write_wav(path, &tone);
}

/// A 16-bit mono WAV of the samples (full scale is ±1, beyond is clipped).
pub fn write_wav(path: &Path, samples: &[f64]) {
    let mut data = Vec::with_capacity(samples.len() * 2);
    for s in samples {
        let value = (s.clamp(-1.0, 1.0) * 32767.0) as i16;
        data.extend_from_slice(&value.to_le_bytes());
    }
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&RATE.to_le_bytes());
    wav.extend_from_slice(&(RATE * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    std::fs::write(path, wav).expect("write wav");
}

/// The samples of a 16-bit PCM WAV.
pub fn read_samples(path: &Path) -> Vec<f64> {
    let bytes = std::fs::read(path).expect("read recording");
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        if id == b"data" {
            let end = (at + 8 + len).min(bytes.len());
            return bytes[at + 8..end]
                .chunks_exact(2)
                .map(|b| f64::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
                .collect();
        }
        at += 8 + len + (len & 1);
    }
    panic!("no data chunk in {}", path.display());
}

/// Signal power at one frequency (Goertzel).
pub fn power_at(samples: &[f64], freq_hz: f64) -> f64 {
    let coeff = 2.0 * (2.0 * PI * freq_hz / f64::from(RATE)).cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for x in samples {
        let s = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / samples.len().max(1) as f64
}

// ---- Two-party calls driven through the CLI ----

impl Net {
    /// A peer whose account is registered.
    pub async fn registered(&self, name: &str) -> Peer {
        let peer = self.peer(name);
        peer.ok(&["register", &peer.name]).await;
        peer
    }
}

/// The first line of `event` among a command's JSON lines.
pub fn find_event<'a>(lines: &'a [Value], event: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["event"] == event)
        .unwrap_or_else(|| panic!("no {event} in {lines:?}"))
}

/// Lets a `call` process run to its end: it must exit 0 with its `call_ended` line for
/// `call_id`, ended by its own hang-up. That line.
pub async fn hung_up(call: Running, call_id: &str) -> Value {
    let (code, lines) = call.finish().await;
    assert_eq!(code, Some(0), "{lines:?}");
    let ended = find_event(&lines, "call_ended").clone();
    assert_eq!(ended["call_id"], call_id);
    assert_eq!(ended["reason"], "hangup", "{ended}");
    ended
}

/// A number in a call's `stats`.
pub fn stat(stats: &Value, field: &str) -> f64 {
    stats[field]
        .as_f64()
        .unwrap_or_else(|| panic!("no {field} in {stats}"))
}

/// `args`, then `--play PLAY --record RECORD`: a command that plays a WAV file into its
/// calls and records what it hears.
pub fn with_audio<'a>(args: &[&'a str], play: &'a Path, record: &'a Path) -> Vec<&'a str> {
    let mut all = args.to_vec();
    all.extend([
        "--play",
        play.to_str().expect("utf-8"),
        "--record",
        record.to_str().expect("utf-8"),
    ]);
    all
}

/// The WAV files of a call from alice to bob: what each side plays and where it records.
/// Recordings stand in for the sound cards, which a test machine may not have.
pub struct CallWavs {
    pub alice_play: PathBuf,
    pub bob_play: PathBuf,
    pub alice_rec: PathBuf,
    pub bob_rec: PathBuf,
}

impl CallWavs {
    /// The four files' places in `dir`; nothing is written.
    pub fn in_dir(dir: &Path) -> CallWavs {
        CallWavs {
            alice_play: dir.join("alice.wav"),
            bob_play: dir.join("bob.wav"),
            alice_rec: dir.join("alice-rec.wav"),
            bob_rec: dir.join("bob-rec.wav"),
        }
    }

    /// Alice plays a 440 Hz tone and bob a 1 kHz tone, each `seconds` long.
    pub fn tones(dir: &Path, seconds: f64) -> CallWavs {
        let wavs = CallWavs::in_dir(dir);
        write_tone(&wavs.alice_play, 440.0, seconds);
        write_tone(&wavs.bob_play, 1000.0, seconds);
        wavs
    }

    /// `online --auto-answer` playing and recording bob's files.
    pub fn answering_args(&self) -> Vec<&str> {
        with_audio(&["online", "--auto-answer"], &self.bob_play, &self.bob_rec)
    }

    /// Bob online, answering every call with his files, once he is logged in.
    pub async fn bob_answers(&self, bob: &Peer) -> Running {
        let mut online = bob.spawn(&self.answering_args());
        online.wait_event("logged_in", &[("user", "bob")]).await;
        online
    }

    /// `call bob` for `seconds`, playing and recording alice's files, then `extra`.
    pub fn call_args<'a>(&'a self, seconds: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = with_audio(&["call", "bob"], &self.alice_play, &self.alice_rec);
        args.extend(["--seconds", seconds]);
        args.extend_from_slice(extra);
        args
    }
}
