//! `qs::parse` on arbitrary query strings: never panics, and an accepted query yields at most one
//! string leaf per `key=value` pair (nothing is invented or blown up).
#![no_main]

use libfuzzer_sys::fuzz_target;
use unigate_unified::qs;

fn leaves(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::String(_) => 1,
        serde_json::Value::Array(items) => items.iter().map(leaves).sum(),
        serde_json::Value::Object(map) => map.values().map(leaves).sum(),
        other => panic!("non-string leaf {other}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    match qs::parse(raw) {
        Ok(object) => {
            let pairs = raw.split('&').filter(|pair| !pair.is_empty()).count();
            assert!(pairs <= qs::MAX_PARAMS);
            let leaves: usize = object.values().map(leaves).sum();
            assert!(leaves <= pairs, "{leaves} leaves from {pairs} pairs");
        }
        Err(message) => assert!(!message.is_empty()),
    }
});
