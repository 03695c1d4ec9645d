//! Rule matching and request parsing: method, path (with query), authority and headers
//! from fuzz input, against a configuration with every match kind. Must never panic.
#![no_main]

use bearer_guard::AccountState;
use bearer_guard::Config;
use bearer_guard::KeySet;
use bearer_guard::KeyAvailability;
use bearer_guard::{AccountLookup, Inputs, KeyLookup, decide};
use bearer_guard::{Headers, Request};
use bearer_guard::RustBackend;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

struct NoKeys;
impl KeyLookup for NoKeys {
    fn availability(&self, _: usize) -> KeyAvailability {
        KeyAvailability::Loading
    }
    fn keys(&self, _: usize) -> Option<&KeySet> {
        None
    }
    fn may_refetch(&self, _: usize) -> bool {
        true
    }
}
impl AccountLookup for NoKeys {
    fn account(&self, _: usize, _: &str) -> AccountState<'_> {
        AccountState::Unknown
    }
    fn may_wait(&self, _provider: usize, _key: &str) -> bool {
        true
    }
}

fn cfg() -> &'static Config {
    static C: OnceLock<Config> = OnceLock::new();
    C.get_or_init(|| {
        let text = r#"{"providers":[{"name":"idp","algorithms":["RS256"],"jwks":{"cluster":"c","authority":"a","path":"/"}}],
          "rules":[
            {"match":{"methods":["GET"],"path":"/health"},"public":true},
            {"match":{"host":"*.example.com","prefix":"/v1/"},"permissions":["x"]},
            {"match":{"template":"/n/{id}/c/{c}"},"all_of":["n:{path.id}:{query.q}"],"member_of":{"path":"c","claim":"cs"}},
            {"match":{"route":"r"},"headers":{"X-U":"uuidv7","X-I":"uuid","X-P":"present"}}]}"#;
        bearer_guard::parse_config(text.as_bytes(), &|_| None).expect("config")
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\n');
    let method = parts.next().unwrap_or("GET").to_string();
    let path = parts.next().unwrap_or("/").to_string();
    let authority = parts.next().unwrap_or("").to_string();
    let route_name = parts.next().map(str::to_string);
    let headers = Headers::from_pairs(parts.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.to_ascii_lowercase(), v)));
    let req = Request { method, path, authority, route_name, headers, ..Default::default() };
    let _ = decide(&Inputs::new(cfg(), &NoKeys, &RustBackend, 0).accounts(&NoKeys), &req);
});
