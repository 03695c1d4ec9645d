//! What the end-to-end suites share: the named fixtures of `support::fixtures` (tokens,
//! keys, the test configuration), a running stack (JWKS server + echo upstream + Envoy
//! with the filter) and the contract's replies.

use crate::support;

use serde_json::Value;
pub use support::envoy::{free_port, http, http_raw, native, Envoy, Options, Reply};
pub use support::fixtures::{
    claims_for, claims_with, expired_token, good_claims, good_token, keys, not_yet_valid_token,
    plugin, token_for, token_with, unknown_kid_token, wrong_audience_token, wrong_issuer_token,
    AUD, ISS, SECRET,
};
pub use support::idp::{
    b64, claims, jwks, mint_hs, mint_hs256, mint_hs256_with_header, now, EcSigner, EdSigner, Signer,
};
pub use support::servers::{echo, HttpServer, JwksMode, JwksServer};

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
