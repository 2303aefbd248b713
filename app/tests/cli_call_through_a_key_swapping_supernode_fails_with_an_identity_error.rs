//! A malicious supernode (the real supernode with the test-only tamper hook) that swaps
//! users' keys for one of its own cannot get a call connected or a chat shown, and the
//! people are told that the identity check failed:
//!
//! 1. It hands out forged credentials (the user's name, its own key, signed by a key of its
//!    own) in search answers and re-seals every routed message under them: the caller's
//!    call ends `failed` at once with "identity check failed", the chat is refused with the
//!    same cause, and nothing reaches the callee.
//! 2. It lets the invitation through and swaps the key in the callee's answers (inside the
//!    envelope and in the routing fields): the caller's call ends `failed` with "identity
//!    check failed"; the callee, which rang, never connects; no media flows either way.
//! 3. It swaps the key in a chat on its way: the recipient shows no chat and is told that a
//!    message said to be from the sender failed the identity check.
//!
//! Throughout, nobody seals anything to the supernode's key.

mod cli_net;

use cli_net::Net;
use login_server::LoginServer;
use login_server::config::ServerConfig;
use proto::peer::{ChatMessage, PeerToPeer, open_peer_message, seal_peer_message};
use proto::supernode::{ClientToSupernode, SupernodeToClient};
use proto::{
    Credential, DisplayName, MessageId, PublicKey, SecretKey, SignedCredential, UnixTime, UserName,
};
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use supernode::core::tamper::{Tamper, TamperHook};
use supernode::shell::{RunningSupernode, ShellConfig};

const FORGED_TEXT: &str = "forged by the supernode";

#[derive(Debug, Clone, PartialEq)]
enum Mode {
    Honest,
    /// Forged credentials in search answers; every routed message re-sealed under one.
    Everything,
    /// Routed messages from this user re-sealed under a forged credential.
    From(UserName),
}

/// What the malicious supernode does and saw.
struct KeySwapper {
    /// The key it substitutes for users' device keys.
    evil: SecretKey,
    /// Signs its forged credentials (it has no way to get the authority's signature).
    rogue_authority: SecretKey,
    /// The real authority: to notice anything sealed to its key that it could then read.
    authority: PublicKey,
    mode: Mutex<Mode>,
    forged: AtomicUsize,
    leaked: AtomicUsize,
}

fn wall() -> UnixTime {
    UnixTime::from_system(SystemTime::now())
}

impl KeySwapper {
    fn set(&self, mode: Mode) {
        *self.mode.lock().expect("mode") = mode;
    }

    fn mode(&self) -> Mode {
        self.mode.lock().expect("mode").clone()
    }

    /// A credential saying `user`'s device key is the supernode's.
    fn forge(&self, user: &UserName) -> SignedCredential {
        let now = wall();
        SignedCredential::issue(
            &Credential {
                serial: rand::random(),
                user: user.clone(),
                display_name: DisplayName::new(user.as_str()).expect("valid"),
                device_key: self.evil.public(),
                issued_at: now.saturating_sub(Duration::from_secs(60)),
                expires_at: now.saturating_add(Duration::from_secs(3600)),
            },
            &self.rogue_authority,
        )
    }
}

impl Tamper for KeySwapper {
    fn to_client(&self, device: &PublicKey, message: &mut SupernodeToClient) -> bool {
        let mode = self.mode();
        match message {
            SupernodeToClient::SearchResults { hits, .. } if mode == Mode::Everything => {
                for hit in hits.iter_mut().filter(|h| h.credential.is_some()) {
                    hit.credential = Some(self.forge(&hit.user));
                    self.forged.fetch_add(1, Ordering::SeqCst);
                }
            }
            SupernodeToClient::Routed {
                from,
                from_device,
                payload,
            } if mode == Mode::Everything || mode == Mode::From(from.clone()) => {
                // The routing field too: the message claims to come from its own device.
                *from_device = self.evil.public();
                let forged = PeerToPeer::Chat(ChatMessage {
                    id: MessageId(rand::random()),
                    sent_at_millis: 0,
                    seq: 1,
                    text: FORGED_TEXT.into(),
                });
                *payload = seal_peer_message(&self.evil, &self.forge(from), device, &forged)
                    .expect("seal a forgery");
                self.forged.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
        true
    }

    fn client_sent(&self, _device: &PublicKey, message: &mut ClientToSupernode) -> bool {
        if let ClientToSupernode::Route {
            to_device, payload, ..
        } = message
            && (*to_device == Some(self.evil.public())
                || open_peer_message(&self.evil, &self.authority, wall(), payload).is_ok())
        {
            self.leaked.fetch_add(1, Ordering::SeqCst);
        }
        true
    }
}

async fn start(swapper: &Arc<KeySwapper>, login: LoginServer, dir: tempfile::TempDir) -> Net {
    let mut config = ShellConfig::new(
        login.quic_addr(),
        login.authority_key(),
        dir.path().join("evil"),
    );
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.directory_poll = Duration::from_millis(300);
    config.heartbeat = Duration::from_secs(2);
    config.core.tamper = Some(TamperHook(swapper.clone()));
    let evil = RunningSupernode::start(config)
        .await
        .expect("supernode starts");
    Net {
        dir,
        login,
        supernodes: vec![evil],
    }
}

fn event<'a>(lines: &'a [Value], name: &str) -> Option<&'a Value> {
    lines.iter().find(|l| l["event"] == name)
}

/// The caller's `call` ended `failed` with an identity error and no media.
fn assert_identity_failure(finished: &cli_net::Finished, what: &str) {
    assert_eq!(finished.code, Some(1), "{what}: {finished:?}");
    let ended = event(&finished.lines, "call_ended")
        .unwrap_or_else(|| panic!("{what}: no call_ended in {:?}", finished.lines));
    eprintln!("[caller] {ended}");
    assert_eq!(ended["reason"], "failed", "{what}: {ended}");
    let detail = ended["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("identity check failed"),
        "{what}: the detail says the identity check failed: {ended}"
    );
    assert_eq!(ended["stats"]["packets_received"], 0, "{what}: {ended}");
    assert!(
        event(&finished.lines, "call_connected").is_none(),
        "{what}: {:?}",
        finished.lines
    );
    assert!(
        finished.stderr.contains("identity check failed"),
        "{what}: the one-line cause says so: {}",
        finished.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_and_chats_through_a_key_swapping_supernode_fail_with_an_identity_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let login = LoginServer::start(ServerConfig::local(dir.path().join("login")))
        .await
        .expect("login server");
    let swapper = Arc::new(KeySwapper {
        evil: SecretKey::generate(),
        rogue_authority: SecretKey::generate(),
        authority: login.authority_key(),
        mode: Mutex::new(Mode::Honest),
        forged: AtomicUsize::new(0),
        leaked: AtomicUsize::new(0),
    });
    let net = start(&swapper, login, dir).await;
    let alice = net.peer("alice");
    let bob = net.peer("bob");
    for peer in [&alice, &bob] {
        peer.ok(&["register", &peer.name]).await;
    }
    let mut alice_online = alice.spawn(&["online", "--auto-answer"]);
    alice_online
        .wait_event("logged_in", &[("user", "alice")])
        .await;

    // 1. Forged keys in search answers and in every routed message.
    swapper.set(Mode::Everything);
    let call = bob.run(&["call", "alice", "--seconds", "2"]).await;
    assert_identity_failure(&call, "a call resolved through forged search answers");
    let detail = event(&call.lines, "call_ended").expect("ended")["detail"].clone();
    assert!(
        detail.as_str().is_some_and(|d| d.contains("alice")),
        "{detail}"
    );
    let chat = bob.run(&["chat", "alice", "for alice only"]).await;
    assert_eq!(chat.code, Some(1), "{chat:?}");
    assert!(
        chat.stderr.contains("identity check failed"),
        "{}",
        chat.stderr
    );
    assert!(event(&chat.lines, "chat_accepted").is_none(), "{chat:?}");

    // 2. The invitation goes through; the callee's answers come back under a swapped key.
    swapper.set(Mode::From(UserName::new("alice").expect("valid")));
    let call = bob.run(&["call", "alice", "--seconds", "2"]).await;
    assert_identity_failure(
        &call,
        "a call whose answer was re-sealed under a swapped key",
    );
    let detail = event(&call.lines, "call_ended").expect("ended")["detail"].clone();
    assert!(
        detail
            .as_str()
            .is_some_and(|d| d.contains("alice's key is not the one the login server certified")),
        "{detail}"
    );
    let call_id = event(&call.lines, "call_ended").expect("ended")["call_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let rang = alice_online
        .wait_event("call_incoming", &[("from", "bob")])
        .await;
    assert_eq!(rang["call_id"], call_id.as_str());
    let ended = alice_online
        .wait_event("call_ended", &[("call_id", &call_id)])
        .await;
    assert_eq!(ended["stats"]["packets_received"], 0, "{ended}");
    assert_eq!(ended["stats"]["packets_sent"], 0, "{ended}");

    // 3. A chat re-sealed under a swapped key on its way.
    swapper.set(Mode::From(UserName::new("bob").expect("valid")));
    let chat = bob.run(&["chat", "alice", "hello through a liar"]).await;
    assert!(
        event(&chat.lines, "chat_delivered").is_none(),
        "no receipt can come back for a message that never arrived: {chat:?}"
    );
    let alarm = alice_online
        .wait_for("an identity alarm about bob", |l| {
            l["event"] == "error"
                && l["message"].as_str().is_some_and(|m| {
                    m.starts_with("identity check failed") && m.contains("from bob")
                })
        })
        .await;
    assert!(alarm["message"].is_string());

    swapper.set(Mode::Honest);
    let seen = alice_online.seen.clone();
    alice_online.stop().await;
    for line in &seen {
        assert_ne!(line["event"], "chat", "alice was shown a chat: {line}");
        assert_ne!(
            line["event"], "call_connected",
            "alice connected a call: {line}"
        );
    }
    assert_eq!(
        seen.iter()
            .filter(|l| l["event"] == "call_incoming")
            .count(),
        0,
        "alice rang only for the invitation that really came from bob: {seen:?}"
    );
    assert!(swapper.forged.load(Ordering::SeqCst) > 0, "the attack ran");
    assert_eq!(
        swapper.leaked.load(Ordering::SeqCst),
        0,
        "nothing was sealed to the supernode's key"
    );
    net.stop().await;
}
