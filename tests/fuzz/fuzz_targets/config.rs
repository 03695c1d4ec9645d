//! Plugin configurations. Must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bearer_guard::parse_config(data, &|_| Some("0123456789abcdef0123456789abcdef".into()));
});
