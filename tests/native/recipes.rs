//! The provider recipes of `docs/configuration.md`, each with a token shaped like that
//! provider's (issuer form, audience, `kid` format, `typ`, where grants live), decided by
//! the pipeline: the rule's grant is found where the recipe says, and a token of the same
//! shape from another tenant or for another audience is refused.

use crate::support::idp::{now, Signer};
use bearer_guard::Denial;
use bearer_guard::KeySet;
use bearer_guard::RustBackend;
use bearer_guard::{decide, Decision, FixedKeys, Inputs};
use bearer_guard::{Headers, Request};
use serde_json::{json, Value};

/// A recipe: the provider as `docs/configuration.md` shows it, a token's header fields and claims, and
/// the permission the test rule requires.
struct Recipe {
    name: &'static str,
    provider: Value,
    typ: &'static str,
    claims: Value,
    requires: &'static str,
}

fn recipes() -> Vec<Recipe> {
    let exp = now() + 600;
    vec![
        Recipe {
            name: "WorkOS",
            provider: json!({"name": "workos", "issuer": "https://api.workos.com", "audiences": ["client_01HXYZ"],
                "algorithms": ["RS256"], "jwks": {"cluster": "workos", "authority": "api.workos.com", "path": "/sso/jwks/client_01HXYZ"}}),
            typ: "JWT",
            claims: json!({"iss": "https://api.workos.com", "aud": "client_01HXYZ", "sub": "user_01HABC",
                "org_id": "org_01HDEF", "role": "member", "permissions": ["entities:read"], "exp": exp}),
            requires: "entities:read",
        },
        Recipe {
            name: "Auth0",
            provider: json!({"name": "auth0", "issuer": "https://example.eu.auth0.com/", "audiences": ["https://api.example.com"],
                "algorithms": ["RS256"], "jwks": {"cluster": "auth0", "authority": "example.eu.auth0.com", "path": "/.well-known/jwks.json"}}),
            typ: "at+jwt",
            claims: json!({"iss": "https://example.eu.auth0.com/", "aud": ["https://api.example.com", "https://example.eu.auth0.com/userinfo"],
                "sub": "auth0|64f0c0ffee", "azp": "spa-client", "scope": "openid profile read:entities",
                "permissions": ["read:entities"], "exp": exp}),
            requires: "read:entities",
        },
        Recipe {
            name: "Okta",
            provider: json!({"name": "okta", "issuer": "https://example.okta.com/oauth2/default", "audiences": ["api://default"],
                "algorithms": ["RS256"], "jwks": {"cluster": "okta", "authority": "example.okta.com", "path": "/oauth2/default/v1/keys"},
                "claims": {"scope": "scp"}}),
            typ: "JWT",
            claims: json!({"iss": "https://example.okta.com/oauth2/default", "aud": "api://default", "sub": "00u1abcd",
                "cid": "0oa1client", "scp": ["openid", "entities:read"], "exp": exp}),
            requires: "entities:read",
        },
        Recipe {
            name: "Entra ID (v2 tokens)",
            provider: json!({"name": "entra", "issuer": "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0",
                "audiences": ["6e74172b-be56-4843-9ff4-e66a39bb12e3"], "algorithms": ["RS256"],
                "jwks": {"cluster": "entra", "authority": "login.microsoftonline.com", "path": "/72f988bf-86f1-41af-91ab-2d7cd011db47/discovery/v2.0/keys"},
                "claims": {"scope": "scp", "role": "roles"}}),
            typ: "JWT",
            claims: json!({"iss": "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0",
                "aud": "6e74172b-be56-4843-9ff4-e66a39bb12e3", "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
                "oid": "00000000-0000-0000-66f3-3332eca7ea81", "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47",
                "scp": "Entities.Read User.Read", "roles": ["Reader"], "ver": "2.0", "exp": exp}),
            requires: "Entities.Read",
        },
        Recipe {
            name: "Entra ID (v1 tokens)",
            provider: json!({"name": "entra-v1", "issuer": "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/",
                "audiences": ["api://6e74172b-be56-4843-9ff4-e66a39bb12e3"], "algorithms": ["RS256"],
                "jwks": {"cluster": "entra", "authority": "login.microsoftonline.com", "path": "/72f988bf-86f1-41af-91ab-2d7cd011db47/discovery/keys"},
                "claims": {"scope": "scp", "role": "roles"}}),
            typ: "JWT",
            claims: json!({"iss": "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/",
                "aud": "api://6e74172b-be56-4843-9ff4-e66a39bb12e3", "sub": "l3_roISQU222bULS9yi2k0XpqpOiMz5H3ZACo1GeXA",
                "scp": "Entities.Read", "ver": "1.0", "exp": exp}),
            requires: "Entities.Read",
        },
        Recipe {
            name: "Google",
            provider: json!({"name": "google", "issuer": "https://accounts.google.com",
                "audiences": ["123456789012-abc.apps.googleusercontent.com"], "algorithms": ["RS256"],
                "jwks": {"cluster": "google", "authority": "www.googleapis.com", "path": "/oauth2/v3/certs"},
                "identity": {"required_claims": ["sub", "email"]}}),
            typ: "JWT",
            claims: json!({"iss": "https://accounts.google.com", "aud": "123456789012-abc.apps.googleusercontent.com",
                "sub": "110169484474386276334", "email": "ada@example.com", "email_verified": true, "exp": exp}),
            requires: "",
        },
        Recipe {
            name: "Cognito (access tokens)",
            provider: json!({"name": "cognito", "issuer": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123",
                "algorithms": ["RS256"],
                "jwks": {"cluster": "cognito", "authority": "cognito-idp.eu-west-1.amazonaws.com", "path": "/eu-west-1_AbCdEf123/.well-known/jwks.json"},
                "identity": {"required_claims": ["sub", "client_id"]}}),
            typ: "JWT",
            claims: json!({"iss": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123", "sub": "7d8ca528-4931-4254-9273-ea5ee853f271",
                "client_id": "1example23456789", "token_use": "access", "scope": "https://api.example.com/entities.read",
                "exp": exp}),
            requires: "https://api.example.com/entities.read",
        },
        Recipe {
            name: "Keycloak",
            provider: json!({"name": "keycloak", "issuer": "https://sso.example.com/realms/platform", "audiences": ["api"],
                "algorithms": ["RS256"],
                "jwks": {"cluster": "keycloak", "authority": "sso.example.com", "path": "/realms/platform/protocol/openid-connect/certs"}}),
            typ: "Bearer",
            claims: json!({"iss": "https://sso.example.com/realms/platform", "aud": ["api", "account"], "sub": "f1b4a3c2-0000-4000-8000-000000000001",
                "azp": "web", "typ": "Bearer", "scope": "profile email entities:read",
                "realm_access": {"roles": ["offline_access"]}, "exp": exp}),
            requires: "entities:read",
        },
        Recipe {
            name: "Keycloak (realm roles)",
            provider: json!({"name": "keycloak", "issuer": "https://sso.example.com/realms/platform", "audiences": ["api"],
                "algorithms": ["RS256"], "claims": {"role": "/realm_access/roles"},
                "jwks": {"cluster": "keycloak", "authority": "sso.example.com", "path": "/realms/platform/protocol/openid-connect/certs"}}),
            typ: "Bearer",
            claims: json!({"iss": "https://sso.example.com/realms/platform", "aud": ["api", "account"], "sub": "f1b4a3c2-0000-4000-8000-000000000001",
                "azp": "web", "typ": "Bearer", "scope": "profile email",
                "realm_access": {"roles": ["offline_access", "uma_authorization", "api-reader"]}, "exp": exp}),
            requires: "entities:read",
        },
        Recipe {
            name: "Keycloak (client roles)",
            provider: json!({"name": "keycloak", "issuer": "https://sso.example.com/realms/platform", "audiences": ["api"],
                "algorithms": ["RS256"], "claims": {"permissions": "/resource_access/api/roles"},
                "jwks": {"cluster": "keycloak", "authority": "sso.example.com", "path": "/realms/platform/protocol/openid-connect/certs"}}),
            typ: "Bearer",
            claims: json!({"iss": "https://sso.example.com/realms/platform", "aud": ["api", "account"], "sub": "f1b4a3c2-0000-4000-8000-000000000001",
                "azp": "web", "typ": "Bearer", "scope": "profile email",
                "realm_access": {"roles": ["offline_access"]},
                "resource_access": {"api": {"roles": ["entities:read"]}, "account": {"roles": ["manage-account"]}}, "exp": exp}),
            requires: "entities:read",
        },
        Recipe {
            name: "Auth0 (roles in a namespaced object)",
            provider: json!({"name": "auth0", "issuer": "https://example.eu.auth0.com/", "audiences": ["https://api.example.com"],
                "algorithms": ["RS256"], "claims": {"role": "/https:~1~1example.com~1authorization/roles"},
                "jwks": {"cluster": "auth0", "authority": "example.eu.auth0.com", "path": "/.well-known/jwks.json"}}),
            typ: "JWT",
            claims: json!({"iss": "https://example.eu.auth0.com/", "aud": "https://api.example.com",
                "sub": "auth0|64f0c0ffee", "scope": "openid",
                "https://example.com/authorization": {"roles": ["api-reader"], "groups": ["eng"]}, "exp": exp}),
            requires: "entities:read",
        },
    ]
}

#[test]
fn every_recipe_accepts_its_providers_tokens() {
    let signer = Signer::generate("kid-like-a-provider's");
    let (keys, _) =
        KeySet::parse(crate::support::idp::jwks(&[&signer]).as_bytes(), 1 << 16).expect("jwks");
    let keys = FixedKeys(keys);
    for r in recipes() {
        let rules = if r.requires.is_empty() {
            json!([{"match": {"prefix": "/"}}])
        } else {
            json!([{"match": {"prefix": "/"}, "permissions": [r.requires]}])
        };
        let cfg = bearer_guard::parse_config(
            json!({"providers": [r.provider], "roles": {"api-reader": ["entities:read"]},
                "forward": {"headers": {"x-sub": "sub"}}, "rules": rules})
            .to_string()
            .as_bytes(),
            &|_| None,
        )
        .unwrap_or_else(|e| panic!("{}: {e}", r.name));
        let decide_with = |claims: &Value| {
            let header = json!({"alg": "RS256", "typ": r.typ, "kid": signer.kid});
            let token = signer.mint_with_header(&header, claims);
            let req = Request {
                method: "GET".into(),
                path: "/v1/entities/x".into(),
                headers: Headers::from_pairs([("authorization", format!("Bearer {token}"))]),
                ..Default::default()
            };
            decide(
                &Inputs::new(&cfg, &keys, &RustBackend, now()).accounts(&keys),
                &req,
            )
            .decision
        };
        let sub = r.claims["sub"].as_str().unwrap_or("").to_string();
        assert_eq!(
            decide_with(&r.claims),
            Decision::Allow {
                headers: vec![("x-sub".into(), sub)]
            },
            "{}",
            r.name
        );
        // Another tenant's token (another issuer) of the same shape is refused.
        let mut other = r.claims.clone();
        other["iss"] = json!("https://another-tenant.example.com/");
        assert_eq!(
            decide_with(&other),
            Decision::Deny(Denial::InvalidToken),
            "{}: other issuer",
            r.name
        );
        // A token for another audience too, where the recipe checks one.
        if r.claims.get("aud").is_some() {
            let mut other = r.claims.clone();
            other["aud"] = json!("another-api");
            assert_eq!(
                decide_with(&other),
                Decision::Deny(Denial::InvalidToken),
                "{}: other aud",
                r.name
            );
        }
        // Without the grant the rule needs, 403.
        if !r.requires.is_empty() {
            let mut bare = r.claims.clone();
            for claim in [
                "permissions",
                "scope",
                "scp",
                "roles",
                "realm_access",
                "resource_access",
                "https://example.com/authorization",
            ] {
                bare.as_object_mut().expect("claims").remove(claim);
            }
            assert_eq!(
                decide_with(&bare),
                Decision::Deny(Denial::InsufficientPermissions),
                "{}: no grant",
                r.name
            );
        }
    }
}
