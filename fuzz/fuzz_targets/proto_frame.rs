//! Fuzzes stream reassembly: any byte stream, split anywhere, yields the same frames or the
//! same error, and never panics or buffers more than the limit plus one read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::frame::{FrameDecoder, decode_body};

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let max = 1024;
    let mut whole = FrameDecoder::new(max);
    whole.push(stream);
    let mut expected = Vec::new();
    while let Ok(Some(body)) = whole.next_frame() {
        assert!(body.len() <= max);
        let _ = decode_body::<proto::SignedCredential>(&body);
        expected.push(body);
    }
    let mut pieces = FrameDecoder::new(max);
    let mut got = Vec::new();
    for chunk in stream.chunks(usize::from(split).max(1)) {
        pieces.push(chunk);
        while let Ok(Some(body)) = pieces.next_frame() {
            got.push(body);
        }
    }
    assert_eq!(expected, got);
});
