//! The CLI between separate processes, a login server and two supernodes: three users
//! register, ask and accept each other as contacts, find each other by user name and by
//! display-name prefix, see each other's presence through `online --json`, chat while both
//! are online (accepted and delivered) and while the recipient is offline (stored, then
//! delivered at their next `online`), and get TURN credentials from their supernode.

mod cli_net;

use cli_net::Net;
use serde_json::Value;

fn event<'a>(lines: &'a [Value], name: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["event"] == name)
        .unwrap_or_else(|| panic!("no {name} event in {lines:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_search_presence_and_chat_work_between_processes() {
    let net = Net::start(2).await;
    let alice = net.peer("alice");
    let bob = net.peer("bob");
    let carol = net.peer("carol");
    for (peer, display) in [
        (&alice, "Alice Liddell"),
        (&bob, "Bob Builder"),
        (&carol, "Carol"),
    ] {
        let lines = peer
            .ok(&["register", &peer.name, "--display-name", display])
            .await;
        assert_eq!(event(&lines, "registered")["user"], peer.name.as_str());
    }

    // alice asks bob; bob, online, is told and accepts from another command.
    let lines = alice.ok(&["contacts", "add", "bob"]).await;
    assert_eq!(lines[0]["user"], "bob");
    assert_eq!(lines[0]["state"], "request_sent");
    let mut bob_online = bob.spawn(&["online"]);
    let logged_in = bob_online.wait_event("logged_in", &[("user", "bob")]).await;
    let home = logged_in["supernode"].as_str().expect("supernode address");
    assert!(
        net.supernodes
            .iter()
            .any(|s| s.quic_addr().to_string() == home),
        "{home} is one of the supernodes"
    );
    bob_online
        .wait_event("contact_request", &[("from", "alice")])
        .await;
    let lines = bob.ok(&["contacts", "accept", "alice"]).await;
    assert_eq!(lines[0]["state"], "accepted");
    bob_online
        .wait_event("contact_added", &[("user", "alice")])
        .await;
    let lines = alice.ok(&["contacts", "list"]).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["user"], "bob");
    assert_eq!(lines[0]["state"], "accepted");
    assert_eq!(lines[0]["display_name"], "Bob Builder");

    // carol finds bob by name and alice by display-name prefix; neither lets her see them.
    let lines = carol.ok(&["search", "bob"]).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["user"], "bob");
    assert_eq!(lines[0]["display_name"], "Bob Builder");
    assert_eq!(lines[0]["status"], "offline");
    let lines = carol.ok(&["search", "Ali"]).await;
    assert!(
        lines
            .iter()
            .any(|l| l["user"] == "alice" && l["display_name"] == "Alice Liddell"),
        "{lines:?}"
    );
    // A contact sees bob's presence in search.
    let lines = alice.ok(&["search", "bob"]).await;
    assert_eq!(lines[0]["status"], "online", "{lines:?}");

    // Presence both ways, across processes (and supernodes, when they homed apart).
    let mut alice_online = alice.spawn(&["online"]);
    alice_online
        .wait_event("logged_in", &[("user", "alice")])
        .await;
    alice_online
        .wait_event("presence", &[("user", "bob"), ("status", "online")])
        .await;
    bob_online
        .wait_event("presence", &[("user", "alice"), ("status", "online")])
        .await;
    alice_online.stop().await;
    bob_online
        .wait_event("presence", &[("user", "alice"), ("status", "offline")])
        .await;

    // Chat while bob is online: accepted, shown to bob, delivered.
    let lines = alice.ok(&["chat", "bob", "hello bob"]).await;
    let accepted = event(&lines, "chat_accepted");
    assert_eq!(accepted["to"], "bob");
    assert_eq!(accepted["stored"], false);
    let id = accepted["id"].as_str().expect("id").to_owned();
    assert_eq!(event(&lines, "chat_delivered")["id"], id.as_str());
    let chat = bob_online
        .wait_event("chat", &[("from", "alice"), ("id", &id)])
        .await;
    assert_eq!(chat["text"], "hello bob");
    assert!(chat["sent_at"].as_u64().expect("sent_at") > 1_600_000_000_000);

    // Chat while bob is offline: stored, delivered at his next `online`.
    bob_online.stop().await;
    let lines = alice.ok(&["chat", "bob", "while you were away"]).await;
    let accepted = event(&lines, "chat_accepted");
    assert_eq!(accepted["stored"], true, "{lines:?}");
    let id = accepted["id"].as_str().expect("id").to_owned();
    let mut bob_online = bob.spawn(&["online"]);
    let chat = bob_online
        .wait_event("chat", &[("from", "alice"), ("id", &id)])
        .await;
    assert_eq!(chat["text"], "while you were away");
    bob_online.stop().await;

    // TURN credentials in the shape of a WebRTC ICE server entry.
    let finished = carol.run(&["turn-credentials"]).await;
    assert_eq!(finished.code, Some(0), "{}", finished.stderr);
    let object = &finished.lines[0];
    assert!(object["urls"].as_array().is_some_and(|u| !u.is_empty()));
    assert!(
        object["username"]
            .as_str()
            .is_some_and(|u| u.ends_with(":carol"))
    );
    assert!(object["password"].as_str().is_some_and(|p| !p.is_empty()));
    assert!(object["ttl_s"].as_u64().is_some_and(|t| t > 0));

    // Errors: one line on stderr, exit 1.
    let finished = alice.run(&["chat", "nobody-here", "hi"]).await;
    assert_eq!(finished.code, Some(1));
    assert_eq!(
        finished
            .stderr
            .trim()
            .lines()
            .last()
            .map(|l| l.starts_with("peerphone: error:")),
        Some(true),
        "{}",
        finished.stderr
    );

    net.stop().await;
}
