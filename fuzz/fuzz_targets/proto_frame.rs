//! Fuzzes stream reassembly: any byte stream, split anywhere, yields the same frames (up to
//! the first error) as the stream pushed whole, and never panics or buffers more than its
//! limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::frame::{FrameDecoder, HEADER_LEN, decode_body};

fn drain(decoder: &mut FrameDecoder, max: usize, out: &mut Vec<Vec<u8>>) -> bool {
    loop {
        match decoder.next_frame() {
            Ok(Some(body)) => {
                assert!(body.len() <= max);
                let _ = decode_body::<proto::SignedCredential>(&body);
                out.push(body);
            }
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let max = 1024;
    let mut whole = FrameDecoder::new(max);
    let mut expected = Vec::new();
    if whole.push(stream).is_ok() {
        drain(&mut whole, max, &mut expected);
    }
    let mut pieces = FrameDecoder::new(max);
    let mut got = Vec::new();
    for chunk in stream.chunks(usize::from(split).max(1)) {
        if pieces.push(chunk).is_err() || !drain(&mut pieces, max, &mut got) {
            break;
        }
        assert!(pieces.buffered() < HEADER_LEN + max);
    }
    assert_eq!(expected, got);
});
