//! Named test fixtures, as Envoy's `jwt_authn` tests keep theirs in `test_common.h`: the
//! issuer and audience the test providers trust, the signing keys, one token per
//! situation with its claims beside it, and the configurations the suites start from.
//! Tests read `expired_token()`, not `claims(ISS, AUD, "user-1", -3600, …)`.
#![allow(dead_code)]

use super::idp::{claims, now, EdSigner, Signer};
use serde_json::{json, Value};
use std::sync::OnceLock;

/// The issuer of the test providers.
pub const ISS: &str = "https://idp.test";
/// The audience the test providers accept.
pub const AUD: &str = "bearer-guard-tests";
/// The subject of the named tokens.
pub const SUB: &str = "user-1";
/// The HS256 (`sdk`) provider's secret, read from `SDK_TOKEN_SECRET`.
pub const SECRET: &str = "sdk-secret-for-tests-0123456789abcdef-long-enough-for-hs512-keys!";
/// An issuer no test provider trusts.
pub const UNTRUSTED_ISS: &str = "https://evil.test";
/// An audience no test provider accepts.
pub const FOREIGN_AUD: &str = "another-client";

/// Two RSA keys, generated once per test binary: key A (`kid` `key-a`) is the one the
/// test JWKS serves, key B (`key-b`) one it does not have until a test rotates to it.
pub fn keys() -> &'static (Signer, Signer) {
    static KEYS: OnceLock<(Signer, Signer)> = OnceLock::new();
    KEYS.get_or_init(|| (Signer::generate("key-a"), Signer::generate("key-b")))
}

// Claims and RS256 tokens. Unless named otherwise a token is signed by key A and lives
// ten minutes: `{"iss": ISS, "aud": AUD, "sub": SUB, "iat": now, "exp": now + 600}`.

/// The claims of [`good_token`].
pub fn good_claims() -> Value {
    claims_with(json!({}))
}

/// [`good_claims`] with `extra` claims.
pub fn claims_with(extra: Value) -> Value {
    claims_for(SUB, extra)
}

/// [`good_claims`] of subject `sub`, with `extra` claims.
pub fn claims_for(sub: &str, extra: Value) -> Value {
    claims(ISS, AUD, sub, 600, extra)
}

/// Valid: [`good_claims`], signed by key A.
pub fn good_token() -> String {
    keys().0.mint(&good_claims())
}

/// A valid token with `extra` claims (permissions, roles, scopes…).
pub fn token_with(extra: Value) -> String {
    keys().0.mint(&claims_with(extra))
}

/// A valid token of subject `sub` with `extra` claims.
pub fn token_for(sub: &str, extra: Value) -> String {
    keys().0.mint(&claims_for(sub, extra))
}

/// Expired an hour ago (far past the 60 s clock skew):
/// `{"iss": ISS, "aud": AUD, "sub": SUB, "iat": now, "exp": now - 3600}`.
pub fn expired_token() -> String {
    keys().0.mint(&claims(ISS, AUD, SUB, -3600, json!({})))
}

/// Not valid for another hour: [`good_claims`] with `"nbf": now + 3600`.
pub fn not_yet_valid_token() -> String {
    token_with(json!({"nbf": now() + 3600}))
}

/// [`good_claims`] signed by key B, whose `kid` (`key-b`) the test JWKS does not have.
pub fn unknown_kid_token() -> String {
    keys().1.mint(&good_claims())
}

/// For another audience: [`good_claims`] with `"aud": FOREIGN_AUD`.
pub fn wrong_audience_token() -> String {
    keys()
        .0
        .mint(&claims(ISS, FOREIGN_AUD, SUB, 600, json!({})))
}

/// From another issuer: [`good_claims`] with `"iss": UNTRUSTED_ISS`.
pub fn wrong_issuer_token() -> String {
    keys()
        .0
        .mint(&claims(UNTRUSTED_ISS, AUD, SUB, 600, json!({})))
}

/// The test configuration the suites start from: provider `idp` (RS256, [`ISS`],
/// [`AUD`], keys from the `jwks` cluster, `sub` required), provider `sdk` (HS256, secret
/// [`SECRET`] from `SDK_TOKEN_SECRET`, permissions under a namespaced claim), roles
/// `admin` and `furnisher`, the identity forwarded, `GET /health` and `GET /version`
/// public; `rules` are appended after the public ones.
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

// The VM core's suites (native): time is whatever the test says, starting at `T0`, and
// the provider's one key is a fixed EdDSA key.

/// Start of every VM test's clock (ms): tokens are minted for it.
pub const T0: u64 = 1_800_000_000_000;
/// [`T0`] in seconds, as a token's NumericDate.
pub const T0_S: i64 = (T0 / 1000) as i64;
/// How long the VM suites' providers wait for a key set, list or account (ms).
pub const TIMEOUT_MS: u64 = 1000;

/// The VM suites' signing key (EdDSA, `kid` `k1`).
pub fn vm_key() -> &'static EdSigner {
    static KEY: OnceLock<EdSigner> = OnceLock::new();
    KEY.get_or_init(|| EdSigner::from_secret("k1", &[7; 32]))
}

/// The JWKS document with [`vm_key`], as the `jwks` cluster answers.
pub fn vm_jwks_body() -> Vec<u8> {
    json!({"keys": [vm_key().jwk()]}).to_string().into_bytes()
}

/// Claims of `iss` for `sub`, issued at [`T0`] and valid for an hour, with `extra`:
/// `{"iss": iss, "aud": AUD, "sub": sub, "iat": T0_S, "exp": T0_S + 3600}`.
pub fn claims_at_t0(iss: &str, sub: &str, extra: Value) -> Value {
    let mut c = claims(iss, AUD, sub, 3600, extra);
    c["iat"] = json!(T0_S);
    c["exp"] = json!(T0_S + 3600);
    c
}

/// A token of [`ISS`] for `sub` valid at [`T0`] for an hour, signed by [`vm_key`].
pub fn vm_token(sub: &str, extra: Value) -> String {
    vm_key().mint(&claims_at_t0(ISS, sub, extra))
}

/// Where the VM suites' providers get their keys: the `jwks` cluster, within
/// [`TIMEOUT_MS`], retried after a second.
pub fn vm_jwks() -> Value {
    json!({"cluster": "jwks", "authority": "idp.test", "path": "/jwks",
           "timeout_ms": TIMEOUT_MS, "retry_max_s": 1})
}

/// The provider the VM suites' configurations start from: `name`, issuer [`ISS`],
/// EdDSA, keys from [`vm_jwks`].
pub fn vm_provider(name: &str) -> Value {
    json!({"name": name, "issuer": ISS, "algorithms": ["EdDSA"], "jwks": vm_jwks()})
}
