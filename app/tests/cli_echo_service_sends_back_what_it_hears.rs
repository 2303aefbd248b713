//! `echo-service --mode live` answers calls by itself and sends back what it hears: a
//! caller playing a tone records that tone.

mod cli_net;

use cli_net::{Net, RATE, power_at, read_samples, with_audio, write_tone};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_echo_account_answers_and_echoes_the_caller() {
    let net = Net::start(1).await;
    let alice = net.registered("alice").await;
    let echo = net.registered("echo").await;
    let tone = net.dir.path().join("tone.wav");
    let heard = net.dir.path().join("heard.wav");
    write_tone(&tone, 440.0, 10.0);

    let mut service = echo.spawn(&["echo-service", "--mode", "live"]);
    service.wait_event("logged_in", &[("user", "echo")]).await;

    let mut call = with_audio(&["call", "echo"], &tone, &heard);
    call.extend(["--seconds", "4"]);
    let lines = alice.ok(&call).await;
    assert!(
        lines.iter().any(|l| l["event"] == "call_connected"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "call_ended" && l["reason"] == "hangup"),
        "{lines:?}"
    );
    service
        .wait_event("call_incoming", &[("from", "alice")])
        .await;
    service
        .wait_event("call_ended", &[("reason", "hangup")])
        .await;
    service.stop().await;

    let samples = read_samples(&heard);
    assert!(samples.len() > RATE as usize * 2, "alice recorded the call");
    let (at_tone, elsewhere) = (power_at(&samples, 440.0), power_at(&samples, 1000.0));
    assert!(
        at_tone > 10.0 * elsewhere && at_tone > 1e-3,
        "the echo carries the tone: {at_tone} vs {elsewhere}"
    );
    net.stop().await;
}
