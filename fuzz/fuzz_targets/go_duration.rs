//! Go durations (`300ms`, `1.5h`, `2h45m`) as Clair's configuration writes them.
//! Laws: a parsed duration is within Go's range and formats to text that parses back to it;
//! every duration in Go's range round-trips through `format_go_duration`.
#![no_main]
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tocsin_fuzz::duration::{format_go_duration, parse_go_duration};

const MAX_NANOS: u64 = i64::MAX as u64;

fn round_trips(d: Duration) {
    let text = format_go_duration(d);
    assert_eq!(parse_go_duration(&text), Ok(d), "{text:?}");
}

fuzz_target!(|data: &[u8]| {
    if let Some(n) = data.get(..8) {
        let mut b = [0u8; 8];
        b.copy_from_slice(n);
        round_trips(Duration::from_nanos(u64::from_le_bytes(b) & MAX_NANOS));
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_go_duration(text) {
        Ok(d) => {
            assert!(d.as_nanos() <= u128::from(MAX_NANOS));
            round_trips(d);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
