//! Fuzzes the impairment spec parser: it must never panic, and every spec it accepts must
//! print back (`Display`) to a spec that parses to an equal config.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netsim::ImpairmentConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = input.parse::<ImpairmentConfig>() {
        let written = config.to_string();
        let reparsed: ImpairmentConfig = written
            .parse()
            .unwrap_or_else(|e| panic!("`{input}` printed as `{written}` which fails: {e}"));
        assert_eq!(reparsed, config, "`{input}` printed as `{written}`");
    }
});
