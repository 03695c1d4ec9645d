//! The vendored conformance vectors (`tests/vectors/`), read by the conformance tests and
//! the `verify-timing` example.

use serde_json::Value;

/// A vector file under `tests/vectors/`, parsed.
pub fn vectors(path: &str) -> Value {
    let full = format!("{}/tests/vectors/{path}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}")))
        .expect("json")
}

/// Lowercase hex as the vectors write it, decoded.
pub fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}
