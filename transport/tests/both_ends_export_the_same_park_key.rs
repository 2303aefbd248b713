//! Parked sessions take their key from the TLS keying-material exporter: both ends of one
//! connection derive the same bytes, another connection between the same keys different ones.

mod common;

use common::*;
use transport::{Endpoint, PeerPolicy, ServerOptions, Tuning};

const LABEL: &[u8] = b"EXPORTER-test-label";

#[tokio::test]
async fn both_ends_export_the_same_bytes_and_each_connection_its_own() {
    let server_key = key();
    let server =
        Endpoint::bind(loopback(), &server_key, Some(ServerOptions::default())).expect("bind");
    let client = Endpoint::bind(loopback(), &key(), None).expect("bind client");
    let server_addr = server.local_addr().expect("addr");
    let tuning = Tuning::client();
    let mut exported = Vec::new();
    for _ in 0..2 {
        let accept = async {
            let incoming = server.accept().await.expect("an incoming connection");
            incoming.complete().await.expect("handshake")
        };
        let connect = client.connect(server_addr, PeerPolicy::Key(server_key.public()), &tuning);
        let (server_side, conn) =
            tokio::time::timeout(PROMPTLY, async { tokio::join!(accept, connect) })
                .await
                .expect("connects in time");
        let conn = conn.expect("connect");
        let ours = conn.export_keying_material(LABEL).expect("QUIC exports");
        let theirs = server_side
            .export_keying_material(LABEL)
            .expect("QUIC exports");
        assert_eq!(ours, theirs);
        assert_ne!(
            Some(ours),
            conn.export_keying_material(b"EXPORTER-another-label")
        );
        exported.push(ours);
    }
    assert_ne!(exported[0], exported[1]);
}
