//! A revocation list document (jti, sub and sid entries with their bounds), then tokens
//! checked against it. Must never panic, and a list that parses must bound its size.
#![no_main]

use bearer_guard::{RevocationLimits, RevocationList};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let limits = RevocationLimits {
        max_entries: 64,
        clock_skew_s: 60,
    };
    let now_s = 1_800_000_000;
    let Ok(list) = RevocationList::parse(data, &limits, now_s) else {
        return;
    };
    assert!(list.len() <= limits.max_entries, "{} entries kept", list.len());
    for claims in [
        json!({"jti": "tok-1", "sub": "user_ada", "sid": "s-1", "iat": now_s - 100}),
        json!({"jti": 7, "sub": ["user_ada"], "iat": "x"}),
        json!({}),
    ] {
        if let Some(claims) = claims.as_object() {
            let _ = list.check(claims);
        }
    }
});
