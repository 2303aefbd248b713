//! Two `peerphone` processes acting as one device on the network would interleave the chat
//! sequence numbers and outbox of one profile and fight over its supernode session: while
//! one runs (`online`), a second on the same `--profile` exits 1 with a one-line cause that
//! names the holder's pid, and leaves the profile as it was. Buddy-list commands, which only
//! talk to the login server, still run beside it; once the first process stops, the profile
//! is free again.

mod cli_net;

use cli_net::Net;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_a_profile_in_use_gets_a_clear_error() {
    let net = Net::start(1).await;
    let alice = net.peer("alice");
    alice.ok(&["register", "alice"]).await;
    let credential_before = std::fs::read(alice.profile.join("credential")).expect("credential");

    let mut online = alice.spawn(&["online"]);
    online.wait_event("logged_in", &[("user", "alice")]).await;
    let holder: u32 = std::fs::read_to_string(alice.profile.join("peerphone.lock"))
        .expect("lock file")
        .trim()
        .parse()
        .expect("the holder's pid");
    let exe = std::fs::read_link(format!("/proc/{holder}/exe")).expect("holder runs");
    assert!(
        exe.ends_with("peerphone"),
        "the lock names the running peerphone, not {exe:?}"
    );

    for command in [
        &["online"][..],
        &["chat", "alice", "hi me"],
        &["search", "alice"],
    ] {
        let second = alice.run(command).await;
        assert_eq!(second.code, Some(1), "{command:?}: {second:?}");
        let expected = format!(
            "profile {} is in use by another peerphone process (pid {holder})",
            std::fs::canonicalize(&alice.profile)
                .expect("canonical")
                .display()
        );
        assert!(
            second.stderr.contains(&expected),
            "{command:?}: stderr says why: {}",
            second.stderr
        );
        assert!(
            !second.lines.iter().any(|l| l["event"] == "logged_in"),
            "the second process never went online: {:?}",
            second.lines
        );
    }
    // The refused processes touched nothing the first one relies on.
    assert_eq!(
        std::fs::read(alice.profile.join("credential")).expect("credential"),
        credential_before
    );
    // Buddy-list commands go to the login server only and may run beside `online`.
    alice.ok(&["contacts", "list"]).await;

    online.stop().await;
    // Free again once the holder is gone.
    let lines = alice.ok(&["search", "alice"]).await;
    assert!(lines.iter().any(|l| l["user"] == "alice"), "{lines:?}");
    net.stop().await;
}
