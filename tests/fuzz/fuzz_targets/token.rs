//! A token through the whole pipeline (parse, provider selection, times, signature with a
//! fixed key set, claims, authorization). Must never panic.
#![no_main]

use bearer_guard::Config;
use bearer_guard::KeySet;
use bearer_guard::{FixedKeys, Inputs, decide};
use bearer_guard::{Headers, Request};
use bearer_guard::RustBackend;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const JWKS: &str = r#"{"keys":[{"kty":"RSA","kid":"k","alg":"RS256","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB"}]}"#;

fn setup() -> &'static (Config, FixedKeys) {
    static S: OnceLock<(Config, FixedKeys)> = OnceLock::new();
    S.get_or_init(|| {
        let cfg = r#"{"providers":[
            {"name":"idp","algorithms":["RS256"],"jwks":{"cluster":"c","authority":"a","path":"/"},
             "identity":{"required_claims":["sub"]},
             "account":{"cluster":"c","authority":"a","path":"/a?u={sub}","headers":{"x-a":"id"}}},
            {"name":"sdk","algorithms":["HS256"],"secret":{"env":"S"}}],
            "forward":{"headers":{"x-sub":"sub"},"payload_header":"x-p"},
            "rules":[{"match":{"prefix":"/p"},"any_of":["a:b:{header.x}","c"]}]}"#;
        let cfg = bearer_guard::parse_config(cfg.as_bytes(), &|_| Some("0123456789abcdef0123456789abcdef".into())).expect("config");
        let (set, _) = KeySet::parse(JWKS.as_bytes(), bearer_guard::DEFAULT_MAX_JWKS_BYTES).expect("jwks");
        (cfg, FixedKeys(set))
    })
}

fuzz_target!(|data: &[u8]| {
    let (cfg, keys) = setup();
    let token = String::from_utf8_lossy(data);
    let req = Request {
        method: "GET".into(),
        path: "/p".into(),
        headers: Headers::from_pairs([("authorization", format!("Bearer {token}")), ("x", "1".to_string())]),
        ..Default::default()
    };
    let _ = decide(&Inputs::new(cfg, keys, &RustBackend, 1_700_000_000).accounts(keys), &req);
});
