//! Fixtures shared by the end-to-end suites: named tokens and a running stack
//! (JWKS server + echo upstream + Envoy with the filter).

use crate::support;

use serde_json::{json, Value};
use std::sync::OnceLock;
pub use support::envoy::{free_port, http, http_raw, native, Envoy, Options, Reply};
pub use support::idp::{
    b64, claims, jwks, mint_hs, mint_hs256, mint_hs256_with_header, now, EcSigner, EdSigner, Signer,
};
pub use support::servers::{echo, HttpServer, JwksMode, JwksServer};

pub const ISS: &str = "https://idp.test";
pub const AUD: &str = "bearer-guard-tests";
pub const SECRET: &str = "sdk-secret-for-tests-0123456789abcdef-long-enough-for-hs512-keys!";

/// Two RSA keys, generated once per test binary.
pub fn keys() -> &'static (Signer, Signer) {
    static KEYS: OnceLock<(Signer, Signer)> = OnceLock::new();
    KEYS.get_or_init(|| (Signer::generate("key-a"), Signer::generate("key-b")))
}

/// The plugin configuration most suites use; `rules` are appended after the public ones.
pub fn plugin(rules: Vec<Value>) -> Value {
    let mut all = vec![
        json!({"match": {"methods": ["GET"], "path": "/health"}, "public": true}),
        json!({"match": {"methods": ["GET"], "path": "/version"}, "public": true}),
    ];
    all.extend(rules);
    json!({
        "providers": [
            {"name": "idp", "issuer": ISS, "audiences": [AUD], "algorithms": ["RS256"],
             "jwks": {"cluster": "jwks", "authority": "idp.test", "path": "/jwks",
                      "refetch_min_interval_s": 2, "retry_max_s": 1, "timeout_ms": 1500},
             "identity": {"required_claims": ["sub"]}},
            {"name": "sdk", "algorithms": ["HS256"], "secret": {"env": "SDK_TOKEN_SECRET"},
             "claims": {"permissions": "https://api.solo.one/permissions"}}
        ],
        "roles": {"admin": ["*"], "furnisher": ["furnish:write"]},
        "forward": {"headers": {"x-auth-subject": "sub", "x-auth-org": "org_id", "x-auth-permissions": "permissions"}},
        "rules": all
    })
}

/// A running stack, stopped on drop.
pub struct Stack {
    pub jwks: JwksServer,
    /// Kept for the stack's lifetime: Envoy routes to it.
    pub _upstream: HttpServer,
    pub envoy: Envoy,
}

impl Stack {
    /// JWKS serving key A, echo upstream, Envoy with `plugin`.
    pub fn start(plugin: Value) -> Stack {
        let jwks = JwksServer::start(0, JwksMode::Serve(jwks(&[&keys().0]))).expect("jwks server");
        Stack::with_jwks(plugin, jwks)
    }

    /// Like `start`, with `concurrency` Envoy workers (one wasm VM each).
    pub fn start_with(plugin: Value, concurrency: usize) -> Stack {
        let jwks = JwksServer::start(0, JwksMode::Serve(jwks(&[&keys().0]))).expect("jwks server");
        Stack::with_options(plugin, jwks, |o| o.concurrency = concurrency)
    }

    /// Like `start`, with a prepared JWKS server.
    pub fn with_jwks(plugin: Value, jwks: JwksServer) -> Stack {
        Stack::with_options(plugin, jwks, |_| {})
    }

    /// Like `with_jwks`, with the Envoy options adjusted by `adjust`.
    pub fn with_options(
        plugin: Value,
        jwks: JwksServer,
        adjust: impl FnOnce(&mut Options),
    ) -> Stack {
        let upstream = echo(0).expect("echo upstream");
        let mut o = Options::new(plugin, upstream.port, jwks.server.port);
        o.env.push(("SDK_TOKEN_SECRET".into(), SECRET.into()));
        adjust(&mut o);
        let envoy = Envoy::start(&o);
        Stack {
            jwks,
            _upstream: upstream,
            envoy,
        }
    }
}

/// A valid RS256 token from key A with `extra` claims.
pub fn token(extra: Value) -> String {
    keys().0.mint(&claims(ISS, AUD, "user-1", 600, extra))
}

/// Asserts status, exact JSON body and (when given) `www-authenticate`.
pub fn expect(case: &str, r: &Reply, status: u16, body: Option<&str>, www: Option<&str>) {
    assert_eq!(r.status, status, "{case}: status (body {})", r.body);
    if let Some(b) = body {
        assert_eq!(
            r.json(),
            serde_json::from_str::<Value>(b).expect("expected JSON"),
            "{case}: body"
        );
        assert_eq!(r.body, b, "{case}: exact body bytes");
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{case}: content-type"
        );
    }
    assert_eq!(
        r.header("www-authenticate"),
        www,
        "{case}: www-authenticate"
    );
}

pub const REQUIRES_AUTH: &str = r#"{"detail":"Requires authentication"}"#;
pub const INVALID: &str = r#"{"detail":"Invalid or expired token"}"#;
pub const NO_ACCOUNT: &str = r#"{"detail":"Could not validate credentials or find account"}"#;
pub const NOT_ENOUGH: &str = r#"{"detail":"Not enough permissions"}"#;
pub const WWW_BEARER: Option<&str> = Some("Bearer");
pub const WWW_INVALID: Option<&str> = Some("Bearer error=\"invalid_token\"");
pub const WWW_SCOPE: Option<&str> = Some("Bearer error=\"insufficient_scope\"");
