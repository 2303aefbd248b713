//! Fuzzes what a transport peer controls before the application sees a message: the raw
//! public key in its TLS certificate message, and the framed byte stream on a stream
//! (read through the async reader with its limit and mid-frame timeout).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = transport::tls::key_from_spki(data);
    runtime().block_on(async {
        let mut stream = data;
        let max = 1024;
        for _ in 0..data.len() + 1 {
            match transport::read_frame::<_, (u64, String, Vec<u8>)>(&mut stream, max).await {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    });
});
