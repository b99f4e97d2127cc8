//! Fuzzes the request-id and W3C trace-context parsers over arbitrary input.
//! Run: `cargo +nightly fuzz run identity_headers` from `crates/timefuse-tower`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use timefuse::{RequestId, TraceContext};

fuzz_target!(|data: &[u8]| {
    let _ = RequestId::validate(data);
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(id) = RequestId::new(s) {
            assert_eq!(id.as_str(), s);
        }
        let (tp, state) = s.split_once('\n').map_or((s, None), |(a, b)| (a, Some(b)));
        if let Ok(tc) = TraceContext::parse(tp, state) {
            // Our own output always parses back to the same ids.
            let again = TraceContext::parse(&tc.to_traceparent(), None).expect("own output parses");
            assert_eq!(again.trace_id(), tc.trace_id());
            assert_eq!(again.parent_id(), tc.parent_id());
        }
    }
});
