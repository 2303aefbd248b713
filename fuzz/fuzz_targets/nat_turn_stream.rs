//! Fuzzes the TURN stream framing (TCP/TLS, RFC 8656 §12.5): the bytes are cut in two at a
//! fuzzer-chosen point, framed, each frame decoded, and the whole fed to a stream client.
//! Nothing may panic and the decoder never holds more than one frame.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use nat::turn::client::{ClientConfig, TurnClient};
use nat::turn::stream::{StreamDecoder, split_stream};
use nat::turn::wire::decode_datagram;

const MAX_FRAME_BYTES: usize = 2048;

fuzz_target!(|data: &[u8]| {
    let (frames, _) = split_stream(data, MAX_FRAME_BYTES);
    for frame in &frames {
        let _ = decode_datagram(frame);
    }
    let cut = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut decoder = StreamDecoder::new(MAX_FRAME_BYTES);
    let mut again = Vec::new();
    if decoder
        .decode(&data[..cut], |f| again.push(f.to_vec()))
        .is_ok()
    {
        let _ = decoder.decode(&data[cut..], |f| again.push(f.to_vec()));
    }
    assert!(decoder.buffered_bytes() < MAX_FRAME_BYTES);
    assert_eq!(again, frames, "framing does not depend on read sizes");

    let server = "198.51.100.1:3478".parse().expect("literal address");
    let mut client = TurnClient::new(ClientConfig::new(server, "1:u", "p").over_stream(), [0; 32]);
    let now = Instant::now();
    let _ = client.allocate(now);
    let _ = client.handle_stream_bytes(now, data);
    while client.poll_transmit().is_some() {}
    while client.poll_event().is_some() {}
});
