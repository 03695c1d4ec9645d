//! End to end in the real Envoy: which tokens count — the access-token type (RFC 9068
//! `typ`), a maximum lifetime, and conditions on claim values (a provider's: 401; a
//! rule's: 403) — with tokens shaped like Auth0's, Keycloak's and Google's, and the
//! bypass attempts of each.

use crate::common::*;
use serde_json::{json, Value};

/// Provider `idp` accepts only RFC 9068 access tokens living at most an hour, issued to
/// one of two clients; `/v1/verified` also needs a verified e-mail of one domain.
fn config() -> Value {
    let mut c = plugin(vec![
        json!({"name": "verified", "match": {"prefix": "/v1/verified"},
               "claim_values": {"email_verified": true, "hd": "example.com"}}),
        json!({"name": "rest", "match": {"prefix": "/v1/"}}),
    ]);
    c["providers"][0]["token_types"] = json!(["at+jwt"]);
    c["providers"][0]["max_lifetime_s"] = json!(3600);
    c["providers"][0]["claim_values"] = json!({"azp": ["client-a", "client-b"]});
    c
}

/// A token of provider `idp` with this JOSE `typ` (`None`: no `typ`) and claims.
fn token(typ: Option<&str>, extra: Value) -> String {
    let mut header = json!({"alg": "RS256", "kid": keys().0.kid});
    if let Some(t) = typ {
        header["typ"] = json!(t);
    }
    let mut claims = claims_with(json!({"iat": now(), "azp": "client-a"}));
    if let (Some(c), Value::Object(add)) = (claims.as_object_mut(), extra) {
        for (k, v) in add {
            if v.is_null() {
                c.remove(&k);
            } else {
                c.insert(k, v);
            }
        }
    }
    keys().0.mint_with_header(&header, &claims)
}

#[test]
fn token_types_lifetimes_and_claim_values() {
    let stack = Stack::start_with(config(), 2);
    let now = now();
    // Shapes of real tokens: Auth0's access token (at+jwt, azp, permissions), Keycloak's
    // (typ JWT in the header: refused here), Google's ID token (typ JWT: refused).
    let auth0 = token(
        Some("at+jwt"),
        json!({"azp": "client-b", "scope": "openid read:items", "permissions": ["read:items"]}),
    );
    let keycloak = token(
        Some("JWT"),
        json!({"typ": "Bearer", "azp": "client-a", "realm_access": {"roles": ["user"]}}),
    );
    let google_id = token(
        Some("JWT"),
        json!({"azp": "client-a", "email_verified": true, "hd": "example.com"}),
    );
    let rows: Vec<(&str, &str, String, u16, Option<&str>)> = vec![
        (
            "an Auth0-shaped access token",
            "/v1/x",
            auth0.clone(),
            200,
            None,
        ),
        (
            "at+JWT",
            "/v1/x",
            token(Some("at+JWT"), json!({})),
            200,
            None,
        ),
        (
            "application/at+jwt",
            "/v1/x",
            token(Some("application/at+jwt"), json!({})),
            200,
            None,
        ),
        // Bypass attempts: an ID token, no typ, a near miss.
        (
            "a Google-shaped ID token",
            "/v1/x",
            google_id.clone(),
            401,
            Some(INVALID),
        ),
        (
            "a Keycloak-shaped token (typ JWT)",
            "/v1/x",
            keycloak,
            401,
            Some(INVALID),
        ),
        (
            "no typ",
            "/v1/x",
            token(None, json!({})),
            401,
            Some(INVALID),
        ),
        (
            "typ at+jwt+x",
            "/v1/x",
            token(Some("at+jwt+x"), json!({})),
            401,
            Some(INVALID),
        ),
        // Lifetime: an hour passes, longer does not; iat missing or in the future.
        (
            "an hour",
            "/v1/x",
            token(Some("at+jwt"), json!({"iat": now, "exp": now + 3600})),
            200,
            None,
        ),
        (
            "a month",
            "/v1/x",
            token(Some("at+jwt"), json!({"iat": now, "exp": now + 30 * 86400})),
            401,
            Some(INVALID),
        ),
        (
            "no iat",
            "/v1/x",
            token(Some("at+jwt"), json!({"iat": null})),
            401,
            Some(INVALID),
        ),
        (
            "iat in the future",
            "/v1/x",
            token(Some("at+jwt"), json!({"iat": now + 600, "exp": now + 1200})),
            401,
            Some(INVALID),
        ),
        (
            "iat as a string",
            "/v1/x",
            token(Some("at+jwt"), json!({"iat": now.to_string()})),
            401,
            Some(INVALID),
        ),
        // The provider's claim_values: another client of the same tenant is not for us.
        (
            "another client",
            "/v1/x",
            token(Some("at+jwt"), json!({"azp": "client-c"})),
            401,
            Some(INVALID),
        ),
        (
            "no azp",
            "/v1/x",
            token(Some("at+jwt"), json!({"azp": null})),
            401,
            Some(INVALID),
        ),
        (
            "azp as an object",
            "/v1/x",
            token(Some("at+jwt"), json!({"azp": {"client-a": 1}})),
            401,
            Some(INVALID),
        ),
        (
            "azp containing the value",
            "/v1/x",
            token(Some("at+jwt"), json!({"azp": ["client-a-evil"]})),
            401,
            Some(INVALID),
        ),
        // The rule's claim_values: 403 when the token is valid but not for this route.
        (
            "verified e-mail of the domain",
            "/v1/verified",
            token(
                Some("at+jwt"),
                json!({"email_verified": true, "hd": "example.com"}),
            ),
            200,
            None,
        ),
        (
            "unverified e-mail",
            "/v1/verified",
            token(
                Some("at+jwt"),
                json!({"email_verified": false, "hd": "example.com"}),
            ),
            403,
            Some(NOT_ENOUGH),
        ),
        (
            "email_verified as a string",
            "/v1/verified",
            token(
                Some("at+jwt"),
                json!({"email_verified": "true", "hd": "example.com"}),
            ),
            403,
            Some(NOT_ENOUGH),
        ),
        (
            "another domain",
            "/v1/verified",
            token(
                Some("at+jwt"),
                json!({"email_verified": true, "hd": "example.org"}),
            ),
            403,
            Some(NOT_ENOUGH),
        ),
        (
            "no hd",
            "/v1/verified",
            token(Some("at+jwt"), json!({"email_verified": true})),
            403,
            Some(NOT_ENOUGH),
        ),
    ];
    for (case, path, tok, status, body) in rows {
        // Twice: the second answer comes from the verified-token cache.
        for round in ["first", "cached"] {
            let r = stack.envoy.get_with_token(path, &tok);
            let www = match status {
                401 => WWW_INVALID,
                403 => WWW_SCOPE,
                _ => None,
            };
            match body {
                Some(b) => expect(&format!("{case} ({round})"), &r, status, Some(b), www),
                None => assert_eq!(r.status, status, "{case} ({round}): {}", r.body),
            }
        }
    }
}

const T1: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
const T2: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

/// Microsoft Entra multi-tenant v2.0 tokens: one provider for every tenant, `iss`
/// carrying the token's own `tid`, only the listed tenants accepted.
#[test]
fn a_multi_tenant_issuer_accepts_only_its_tenants() {
    let mut c = plugin(vec![json!({"match": {"prefix": "/v1/"}})]);
    let mut entra = c["providers"][0].clone();
    entra["name"] = json!("entra");
    entra["issuer"] = json!("https://login.microsoftonline.com/{tid}/v2.0");
    entra["issuer_values"] = json!([T1, T2]);
    entra["audiences"] = json!(["api://bearer-guard"]);
    if let Some(list) = c["providers"].as_array_mut() {
        list.push(entra);
    }
    let stack = Stack::start(c);
    let token = |iss_tenant: &str, tid: Value| {
        let mut claims = json!({
            "iss": format!("https://login.microsoftonline.com/{iss_tenant}/v2.0"),
            "aud": "api://bearer-guard", "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
            "oid": "00000000-0000-0000-66f3-3332eca7ea81", "tid": tid, "ver": "2.0",
            "iat": now(), "nbf": now() - 5, "exp": now() + 600,
            "scp": "access_as_user", "azp": "6e74172b-be56-4843-9ff4-e66a39bb12e3"});
        if claims["tid"].is_null() {
            claims.as_object_mut().map(|o| o.remove("tid"));
        }
        keys().0.mint(&claims)
    };
    let rows: Vec<(&str, String, u16)> = vec![
        ("a listed tenant", token(T1, json!(T1)), 200),
        ("another listed tenant", token(T2, json!(T2)), 200),
        (
            "an unlisted tenant",
            token(
                "11111111-2222-3333-4444-555555555555",
                json!("11111111-2222-3333-4444-555555555555"),
            ),
            401,
        ),
        (
            "iss of a listed tenant, tid of another",
            token(T1, json!("11111111-2222-3333-4444-555555555555")),
            401,
        ),
        (
            "tid of a listed tenant, iss of another",
            token("11111111-2222-3333-4444-555555555555", json!(T1)),
            401,
        ),
        ("no tid", token(T1, Value::Null), 401),
        ("tid as a number", token("12345", json!(12345)), 401),
        ("a slash in the tenant", token("t1/x", json!("t1/x")), 401),
        ("dots", token("..", json!("..")), 401),
        ("an encoded slash", token("t1%2Fx", json!("t1%2Fx")), 401),
        ("an empty tenant", token("", json!("")), 401),
    ];
    for (case, tok, status) in rows {
        let r = stack.envoy.get_with_token("/v1/x", &tok);
        if status == 200 {
            assert_eq!(r.status, 200, "{case}: {}", r.body);
        } else {
            expect(case, &r, status, Some(INVALID), WWW_INVALID);
        }
    }
}

/// Keys given in the configuration: tokens verify with no fetch at all, a token of
/// another key is refused, and the key set's metrics say what is loaded.
#[test]
fn inline_keys_verify_without_a_fetch() {
    let mut c = plugin(vec![json!({"match": {"prefix": "/v1/"}})]);
    let set: Value = serde_json::from_str(&jwks(&[&keys().0])).expect("jwks");
    c["providers"][0]["jwks"] = json!({"inline": set});
    let stack = Stack::start_with(c, 2);
    for _ in 0..4 {
        let r = stack.envoy.get_with_token("/v1/x", &good_token());
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = stack.envoy.get_with_token("/v1/x", &unknown_kid_token());
    expect("another key", &r, 401, Some(INVALID), WWW_INVALID);
    assert_eq!(stack.jwks.hits(), 0, "inline keys are never fetched");
    assert!(
        stack
            .envoy
            .wait_until(std::time::Duration::from_secs(3), || {
                stack.envoy.filter_stat("provider.idp.keys_loaded") == 1
            }),
        "keys_loaded: {:?}",
        stack.envoy.filter_stats()
    );
}
