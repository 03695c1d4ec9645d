//! JWKS documents. Must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bearer_guard::KeySet::parse(data, bearer_guard::DEFAULT_MAX_JWKS_BYTES);
});
