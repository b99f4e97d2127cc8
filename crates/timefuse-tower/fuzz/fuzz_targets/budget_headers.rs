//! Fuzzes every budget header parser and `read_budget` over arbitrary bytes.
//! Run: `cargo +nightly fuzz run budget_headers` from `crates/timefuse-tower`.
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use timefuse_tower::headers::{self, format_grpc_timeout, format_millis, parse_grpc_timeout, parse_millis};

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = parse_grpc_timeout(data) {
        // Round trip never promises more than was sent.
        let back = parse_grpc_timeout(format_grpc_timeout(d).as_bytes()).expect("own output parses");
        assert!(back <= d);
    }
    if let Ok(d) = parse_millis(data) {
        assert_eq!(parse_millis(format_millis(d).as_bytes()), Ok(d));
    }
    // Split the input into header values and read them as a request would arrive.
    let names = [
        headers::GRPC_TIMEOUT,
        headers::X_DEADLINE_MS,
        headers::X_REQUEST_TIMEOUT_MS,
        headers::X_UPSTREAM_TIMEOUT_MS,
        headers::X_ENVOY_EXPECTED_RQ_TIMEOUT_MS,
    ];
    let mut map = HeaderMap::new();
    for (i, chunk) in data.split(|&b| b == b'\n').enumerate() {
        if let Ok(v) = HeaderValue::from_bytes(chunk) {
            map.append(names[i % names.len()].clone(), v);
        }
    }
    let _ = headers::read_budget(&map, true);
});
