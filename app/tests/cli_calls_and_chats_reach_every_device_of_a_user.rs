//! A user logged in on two devices: a chat reaches both, a call rings on both, the device
//! that answers takes it and the other stops ringing (`answered_elsewhere`).

mod cli_net;

use cli_net::Net;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_devices_get_the_chat_and_ring_and_the_first_answer_wins() {
    let net = Net::start(2).await;
    let alice = net.peer("alice");
    let bob_desk = net.peer("bob");
    let bob_phone = net.device("bob-phone");
    alice.ok(&["register", "alice"]).await;
    bob_desk.ok(&["register", "bob"]).await;
    bob_phone.ok(&["login", "bob"]).await;

    let mut desk = bob_desk.spawn(&["online", "--auto-answer"]);
    let mut phone = bob_phone.spawn(&["online"]);
    desk.wait_event("logged_in", &[("user", "bob")]).await;
    phone.wait_event("logged_in", &[("user", "bob")]).await;

    let lines = alice.ok(&["chat", "bob", "to both of you"]).await;
    let id = lines
        .iter()
        .find(|l| l["event"] == "chat_accepted")
        .and_then(|l| l["id"].as_str())
        .unwrap_or_else(|| panic!("no chat_accepted in {lines:?}"))
        .to_owned();
    for device in [&mut desk, &mut phone] {
        let chat = device
            .wait_event("chat", &[("from", "alice"), ("id", &id)])
            .await;
        assert_eq!(chat["text"], "to both of you");
    }

    let lines = alice.ok(&["call", "bob", "--seconds", "2"]).await;
    let connected = lines
        .iter()
        .find(|l| l["event"] == "call_connected")
        .unwrap_or_else(|| panic!("no call_connected in {lines:?}"));
    let call_id = connected["call_id"].as_str().expect("id").to_owned();
    desk.wait_event("call_connected", &[("call_id", &call_id)])
        .await;
    desk.wait_event("call_ended", &[("call_id", &call_id), ("reason", "hangup")])
        .await;
    phone
        .wait_event("call_incoming", &[("from", "alice"), ("call_id", &call_id)])
        .await;
    phone
        .wait_event(
            "call_ended",
            &[("call_id", &call_id), ("reason", "answered_elsewhere")],
        )
        .await;
    desk.stop().await;
    phone.stop().await;
    net.stop().await;
}
