//! Configuration parsing and compilation, field by field.

use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "SDK_SECRET" => Some("0123456789abcdef0123456789abcdef".into()),
        "SHORT" => Some("short".into()),
        _ => None,
    }
}

/// Each configuration is refused, naming its field.
fn assert_errors_name(cases: Vec<(String, &str)>) {
    let mut wrong = Vec::new();
    for (input, field) in cases {
        match parse(input.as_bytes(), &env) {
            Ok(_) => wrong.push(format!("accepted; expected an error at {field}")),
            Err(e) if e.field != field => wrong.push(format!("expected {field}, got {e}")),
            Err(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

const GOOD: &str = r#"{
  "providers": [
    { "name": "workos", "issuer": "https://api.workos.com", "audiences": ["client_123"],
      "algorithms": ["RS256"],
      "jwks": { "cluster": "workos_jwks", "authority": "api.workos.com", "path": "/sso/jwks/client_123" },
      "identity": { "required_claims": ["sub", "org_id"] } },
    { "name": "sdk", "algorithms": ["HS256"], "secret": { "env": "SDK_SECRET" } }
  ],
  "roles": { "admin": ["*"], "furnisher": ["furnish:write"] },
  "forward": { "headers": { "x-auth-subject": "sub" } },
  "rules": [
    { "match": { "methods": ["GET"], "path": "/health" }, "public": true },
    { "match": { "prefix": "/v1/entities/" }, "permissions": ["entities:read"] },
    { "match": { "methods": ["POST"], "template": "/v1/networks/{network_id}/consumers" },
      "all_of": ["consent:write:{path.network_id}"],
      "member_of": { "path": "network_id", "claim": "networks" } },
    { "match": { "prefix": "/v1/items" },
      "headers": { "Solenya-Index-UUID": "uuid" },
      "any_of": ["index:read:{header.solenya-index-uuid}"] }
  ]
}"#;

#[test]
fn the_spec_example_compiles_with_defaults() {
    let cfg = parse(GOOD.as_bytes(), &env).expect("valid");
    assert_eq!(cfg.providers.len(), 2);
    assert_eq!(cfg.clock_skew_s, 60);
    assert_eq!(cfg.max_token_bytes, 8192);
    let jwks = cfg.providers[0].jwks.as_ref().expect("jwks");
    assert_eq!(
        (jwks.policy.refresh_ms, jwks.policy.timeout_ms),
        (600_000, 2000)
    );
    assert_eq!(
        cfg.providers[1].secret.as_ref().map(|s| s.0.len()),
        Some(32)
    );
    assert_eq!(cfg.rules.len(), 4);
    assert_eq!(cfg.default, DefaultPolicy::Authenticated);
    assert_eq!(cfg.verifier, VerifierChoice::Auto);
    assert!(!format!("{:?}", cfg.providers[1].secret).contains("0123"));
}

/// What decides whether a provider accepts a token changes its fingerprint (so a
/// verdict another VM published under the old configuration is not trusted); what
/// does not, does not.
#[test]
fn provider_fingerprints() {
    let fp = |text: &str| parse(text.as_bytes(), &env).expect("valid").providers[0].fingerprint;
    let base = fp(GOOD);
    assert_eq!(fp(GOOD), base, "stable");
    let swap = |from: &str, to: &str| GOOD.replacen(from, to, 1);
    for changed in [
        swap("client_123\"]", "client_456\"]"),
        swap("https://api.workos.com\"", "https://other\""),
        swap("/sso/jwks/client_123", "/sso/jwks/other"),
        swap(r#""roles""#, r#""clock_skew_s": 5, "roles""#),
        swap(r#""roles""#, r#""max_token_bytes": 4096, "roles""#),
    ] {
        assert_ne!(fp(&changed), base, "{changed}");
    }
    for same in [
        swap(r#""roles""#, r#""default": "deny", "roles""#),
        swap(r#"{ "headers": { "x-auth-subject": "sub" } }"#, "{}"),
    ] {
        assert_eq!(fp(&same), base);
    }
    let cfg = parse(GOOD.as_bytes(), &env).expect("valid");
    assert_eq!(cfg.shared, SharedSlots::default());
    let jwks = cfg.providers[0].jwks.as_ref().expect("jwks");
    assert_eq!(
        (jwks.policy.refetch_min_interval_ms, jwks.max_bytes),
        (5000, 65536)
    );
}

#[test]
fn errors_name_the_field() {
    let swap = |from: &str, to: &str| GOOD.replacen(from, to, 1);
    let cases: Vec<(String, &str)> = vec![
        (swap(r#""roles""#, r#""rolez""#), "rolez"),
        (
            swap(r#""cluster""#, r#""clustr""#),
            "providers[0].jwks.clustr",
        ),
        (
            swap(r#""algorithms": ["RS256"]"#, r#""algorithms": ["none"]"#),
            "providers[0].algorithms[0]",
        ),
        (
            swap(r#""algorithms": ["RS256"]"#, r#""algorithms": []"#),
            "providers[0].algorithms",
        ),
        (
            swap(
                r#""algorithms": ["RS256"]"#,
                r#""algorithms": ["RS256","HS256"]"#,
            ),
            "providers[0].algorithms",
        ),
        (
            swap(r#""SDK_SECRET""#, r#""MISSING""#),
            "providers[1].secret.env",
        ),
        (
            swap(r#""SDK_SECRET""#, r#""SHORT""#),
            "providers[1].secret.env",
        ),
        (
            swap(r#""name": "sdk""#, r#""name": "workos""#),
            "providers[1].name",
        ),
        (
            swap(r#""path": "/sso"#, r#""path": "sso"#),
            "providers[0].jwks.path",
        ),
        (
            swap(r#""x-auth-subject""#, r#""X-Auth""#),
            "forward.headers.X-Auth",
        ),
        (
            swap(r#""x-auth-subject""#, r#""authorization""#),
            "forward.headers.authorization",
        ),
        (
            swap(r#""x-auth-subject": "sub""#, r#""x-auth-subject": "/a~b""#),
            "forward.headers.x-auth-subject",
        ),
        (
            swap(r#""claim": "networks""#, r#""claim": "/networks~""#),
            "rules[2].member_of.claim",
        ),
        (
            swap(r#""org_id"] }"#, r#""/org~3id"] }"#),
            "providers[0].identity.required_claims[1]",
        ),
        (
            swap(
                r#""identity": {"#,
                r#""claims": { "role": "/realm_access/~roles" }, "identity": {"#,
            ),
            "providers[0].claims.role",
        ),
        (
            swap(
                r#""public": true"#,
                r#""public": true, "permissions": ["a"]"#,
            ),
            "rules[0].public",
        ),
        (
            swap(
                r#""prefix": "/v1/entities/""#,
                r#""prefix": "/v1/entities/", "path": "/x""#,
            ),
            "rules[1].match",
        ),
        (
            swap(r#""entities:read""#, r#""entities:re*d""#),
            "rules[1].permissions[0]",
        ),
        (
            swap("{path.network_id}", "{path.nope}"),
            "rules[2].all_of[0]",
        ),
        (
            swap("{header.solenya-index-uuid}", "{cookie.x}"),
            "rules[3].any_of[0]",
        ),
        (
            swap(r#""claim": "networks""#, r#""claim": """#),
            "rules[2].member_of.claim",
        ),
        (
            swap(r#""methods": ["POST"]"#, r#""methods": ["post"]"#),
            "rules[2].match.methods[0]",
        ),
        (
            swap(r#""uuid" }"#, r#""uuid4" }"#),
            "rules[3].headers.Solenya-Index-UUID",
        ),
        (
            swap(r#""workos_jwks""#, r#""""#),
            "providers[0].jwks.cluster",
        ),
        (
            swap(
                r#""template": "/v1/networks/{network_id}/consumers""#,
                r#""template": "/v1/{a}/{a}""#,
            ),
            "rules[2].match.template",
        ),
        // Types, missing fields, nested unknown keys, escapes, duplicate keys, non-objects.
        (swap(r#""public": true"#, r#""public": "yes""#), "rules[0].public"),
        (swap(r#""name": "sdk", "#, ""), "providers[1].name"),
        (
            swap(r#""uuid" }"#, r#""uuid", "X-Other": 5 }"#),
            "rules[3].headers.X-Other",
        ),
        (
            swap(r#""methods": ["POST"]"#, r#""methods": ["POST", 7]"#),
            "rules[2].match.methods[1]",
        ),
        (
            swap(r#""roles": {"#, r#""clock_skew_s": -1, "roles": {"#),
            "clock_skew_s",
        ),
        (
            r#"{"providers":[{"name":"a","algorithms":["HS256"],"secret":{"env":"K","encodin":"x"}}]}"#.to_string(),
            "providers[0].secret.encodin",
        ),
        (
            r#"{"providers":[{"name":"a\"b","algorithms":["HS256"],"sekret":1}]}"#.to_string(),
            "providers[0].sekret",
        ),
        ("{}".to_string(), "providers"),
        (
            swap(r#""roles""#, r#""shared": {"token_slots": 2000000}, "roles""#),
            "shared.token_slots",
        ),
        (
            swap(r#""roles""#, r#""shared": {"slots": 1}, "roles""#),
            "shared.slots",
        ),
        (
            swap(r#""path": "/sso"#, r#""max_bytes": 100, "path": "/sso"#),
            "providers[0].jwks.max_bytes",
        ),
        (
            swap(r#""path": "/sso/jwks/client_123""#, r#""discovery": true, "path": "/x""#),
            "providers[0].jwks.path",
        ),
        (
            swap(r#""path": "/sso/jwks/client_123""#, r#""path": "/x", "allowed_hosts": ["a"]"#),
            "providers[0].jwks.allowed_hosts",
        ),
        ("[]".to_string(), "(root)"),
        (r#"{"providers": [], "providers": []}"#.to_string(), "(root)"),
        (r#"{"providers": []}"#.to_string(), "providers"),
        ("not json".to_string(), "(root)"),
    ];
    assert_errors_name(cases);
}

#[test]
fn secret_encodings() {
    let cfg = |enc: &str, val: &'static str| {
        let json = format!(
            r#"{{"providers":[{{"name":"s","algorithms":["HS256"],"secret":{{"env":"K","encoding":"{enc}"}}}}]}}"#
        );
        parse(json.as_bytes(), &move |_| Some(val.to_string()))
            .map(|c| c.providers[0].secret.clone().map(|s| s.0))
    };
    let b64url = "hJtXIZ2uSN5kbQfbtTNWbpdmhkV8FJG-Onbc6mxCcYg";
    assert_eq!(
        cfg("base64url", b64url).expect("ok").map(|k| k.len()),
        Some(32)
    );
    assert_eq!(
        cfg("base64", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
            .expect("ok")
            .map(|k| k.len()),
        Some(32)
    );
    assert!(cfg("base64url", "%%%").is_err());
}

#[test]
fn hmac_secrets_are_sized_per_algorithm() {
    let with = |algs: &str, bytes: usize| {
        let doc = format!(
            r#"{{"providers": [{{"name": "sdk", "algorithms": {algs}, "secret": {{"env": "S"}}}}]}}"#
        );
        let secret = "k".repeat(bytes);
        parse(doc.as_bytes(), &|_| Some(secret.clone()))
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let cases: Vec<(&str, usize, bool)> = vec![
        (r#"["HS256"]"#, 31, false),
        (r#"["HS256"]"#, 32, true),
        (r#"["HS384"]"#, 47, false),
        (r#"["HS384"]"#, 48, true),
        (r#"["HS512"]"#, 63, false),
        (r#"["HS512"]"#, 64, true),
        // The longest hash a provider pins decides.
        (r#"["HS256", "HS512"]"#, 48, false),
        (r#"["HS256", "HS384"]"#, 48, true),
    ];
    for (algs, bytes, ok) in cases {
        let got = with(algs, bytes);
        assert_eq!(got.is_ok(), ok, "{algs} with {bytes} bytes: {got:?}");
        if let Err(e) = got {
            assert!(e.contains("`providers[0].secret.env`"), "{e}");
        }
    }
    assert_eq!(
        with(r#"["HS512"]"#, 63),
        Err("invalid configuration at `providers[0].secret.env`: S must hold at least 64 bytes for HS512".into())
    );
}

#[test]
fn protected_resources_and_step_up_are_checked() {
    let with = |resources: &str| {
        GOOD.replacen(
            r#""roles":"#,
            &format!(r#""protected_resources": {resources}, "roles":"#),
            1,
        )
    };
    let entities_step_up = |fields: &str| {
        GOOD.replacen(
            r#""permissions": ["entities:read"]"#,
            &format!(r#""permissions": ["entities:read"], {fields}"#),
            1,
        )
    };
    let ok = r#"{"authorization_servers": ["https://as.example.com"], "allowed_authorities": ["api.example.com"]"#;
    let cases: Vec<(String, &str)> = vec![
        (
            with(r#"[{"allowed_authorities": ["a"]}]"#),
            "protected_resources[0].authorization_servers",
        ),
        (
            with(
                r#"[{"authorization_servers": ["http://as.example.com"], "allowed_authorities": ["a"]}]"#,
            ),
            "protected_resources[0].authorization_servers[0]",
        ),
        (
            with(
                r#"[{"authorization_servers": ["as.example.com"], "allowed_authorities": ["a"]}]"#,
            ),
            "protected_resources[0].authorization_servers[0]",
        ),
        (
            with(r#"[{"authorization_servers": ["https://as.example.com"]}]"#),
            "protected_resources[0].resource",
        ),
        (
            with(
                r#"[{"resource": "https://api.example.com/mcp/", "authorization_servers": ["https://as.example.com"]}]"#,
            ),
            "protected_resources[0].resource",
        ),
        (
            with(
                r#"[{"resource": "https://api.example.com/x#f", "authorization_servers": ["https://as.example.com"]}]"#,
            ),
            "protected_resources[0].resource",
        ),
        (
            with(
                r#"[{"resource": "https://u@api.example.com", "authorization_servers": ["https://as.example.com"]}]"#,
            ),
            "protected_resources[0].resource",
        ),
        (
            with(&format!(r#"[{ok}, "match": {{"path_prefix": "mcp"}}}}]"#)),
            "protected_resources[0].match.path_prefix",
        ),
        (
            with(&format!(r#"[{ok}, "match": {{"path_prefix": "/mcp/"}}}}]"#)),
            "protected_resources[0].match.path_prefix",
        ),
        (
            with(&format!(r#"[{ok}, "match": {{"prefix": "/mcp"}}}}]"#)),
            "protected_resources[0].match.prefix",
        ),
        (
            with(
                r#"[{"authorization_servers": ["https://as.example.com"], "allowed_authorities": ["a/b"]}]"#,
            ),
            "protected_resources[0].allowed_authorities[0]",
        ),
        (
            with(&format!(r#"[{ok}, "scopes_supported": ["a b"]}}]"#)),
            "protected_resources[0].scopes_supported[0]",
        ),
        (
            with(&format!(r#"[{ok}, "resource_documentation": "ftp://x"}}]"#)),
            "protected_resources[0].resource_documentation",
        ),
        (
            with(&format!(r#"[{ok}, "color": "blue"}}]"#)),
            "protected_resources[0].color",
        ),
        (
            entities_step_up(r#""acr_values": []"#),
            "rules[1].acr_values",
        ),
        (
            entities_step_up(r#""acr_values": ["a b"]"#),
            "rules[1].acr_values[0]",
        ),
        (entities_step_up(r#""max_age_s": -1"#), "rules[1].max_age_s"),
        (
            entities_step_up(r#""max_age_s": 99999999999"#),
            "rules[1].max_age_s",
        ),
        (
            GOOD.replacen(r#""public": true"#, r#""public": true, "max_age_s": 60"#, 1),
            "rules[0].public",
        ),
    ];
    assert_errors_name(cases);
    // What passes: loopback over http, a derived resource, defaults from the rules.
    let cfg = parse(
        with(r#"[{"match": {"path_prefix": "/v1/entities"}, "allowed_authorities": ["API.example.com"],
                  "authorization_servers": ["http://127.0.0.1:9000", "https://as.example.com"]}]"#)
        .as_bytes(),
        &env,
    )
    .expect("config");
    let r = &cfg.resources.entries[0];
    assert_eq!(r.allowed_authorities, vec!["api.example.com".to_string()]);
    assert_eq!(r.scopes_supported, vec!["entities:read".to_string()]);
    assert_eq!(r.bearer_methods, vec!["header"]);
    let cfg = parse(
        entities_step_up(r#""acr_values": ["phr"], "max_age_s": 60"#).as_bytes(),
        &env,
    )
    .expect("config");
    assert_eq!(
        cfg.rules[1].step_up,
        Some(crate::authz::StepUp {
            acr_values: vec!["phr".into()],
            max_age_s: Some(60)
        })
    );
}

#[test]
fn token_policy_fields_are_checked() {
    let workos = |fields: &str| {
        GOOD.replacen(
            r#""algorithms": ["RS256"]"#,
            &format!(r#""algorithms": ["RS256"], {fields}"#),
            1,
        )
    };
    let entities = |fields: &str| {
        GOOD.replacen(
            r#""permissions": ["entities:read"]"#,
            &format!(r#""permissions": ["entities:read"], {fields}"#),
            1,
        )
    };
    let cases: Vec<(String, &str)> = vec![
        (workos(r#""token_types": []"#), "providers[0].token_types"),
        (
            workos(r#""token_types": ["at jwt"]"#),
            "providers[0].token_types[0]",
        ),
        (
            workos(r#""token_types": [5]"#),
            "providers[0].token_types[0]",
        ),
        (
            workos(r#""max_lifetime_s": 0"#),
            "providers[0].max_lifetime_s",
        ),
        (
            workos(r#""max_lifetime_s": -5"#),
            "providers[0].max_lifetime_s",
        ),
        (
            workos(r#""max_lifetime_s": 999999999999"#),
            "providers[0].max_lifetime_s",
        ),
        (
            workos(r#""claim_values": {"azp": []}"#),
            "providers[0].claim_values.azp",
        ),
        (
            workos(r#""claim_values": {"azp": null}"#),
            "providers[0].claim_values.azp",
        ),
        (
            workos(r#""claim_values": {"azp": {"a": 1}}"#),
            "providers[0].claim_values.azp",
        ),
        (
            workos(r#""claim_values": {"azp": ["a", ["b"]]}"#),
            "providers[0].claim_values.azp[1]",
        ),
        (
            workos(r#""claim_values": {"/bad~2": "x"}"#),
            "providers[0].claim_values./bad~2",
        ),
        (
            workos(r#""claim_values": ["azp"]"#),
            "providers[0].claim_values",
        ),
        (
            entities(r#""claim_values": {"hd": {}}"#),
            "rules[1].claim_values.hd",
        ),
        (
            GOOD.replacen(
                r#""public": true"#,
                r#""public": true, "claim_values": {"a": 1}"#,
                1,
            ),
            "rules[0].public",
        ),
    ];
    assert_errors_name(cases);
    let cfg = parse(
        workos(r#""token_types": ["Application/AT+JWT"], "max_lifetime_s": 3600, "claim_values": {"tid": ["t1", "t2"], "/ext/level": 2}"#)
            .as_bytes(),
        &env,
    )
    .expect("config");
    let p = &cfg.providers[0];
    assert_eq!(p.token_types, vec!["at+jwt".to_string()]);
    assert_eq!(p.max_lifetime_s, Some(3600));
    assert_eq!(p.claim_values.len(), 2);
    let plain = parse(GOOD.as_bytes(), &env).expect("config");
    assert_ne!(
        p.fingerprint, plain.providers[0].fingerprint,
        "the policy is part of the fingerprint"
    );
}

#[test]
fn issuer_templates_and_review_findings_are_checked() {
    let workos = |from: &str, to: &str| GOOD.replacen(from, to, 1);
    let entra = r#""issuer": "https://login.microsoftonline.com/{tid}/v2.0""#;
    let with = |resources: &str| {
        GOOD.replacen(
            r#""roles":"#,
            &format!(r#""protected_resources": {resources}, "roles":"#),
            1,
        )
    };
    let cases: Vec<(String, &str)> = vec![
        (workos(r#""issuer": "https://api.workos.com""#, r#""issuer": "https://a/{tid}/{x}""#), "providers[0].issuer"),
        (workos(r#""issuer": "https://api.workos.com""#, r#""issuer": "https://a/{t.id}""#), "providers[0].issuer"),
        (workos(r#""issuer": "https://api.workos.com""#, r#""issuer": "https://api.workos.com", "issuer_values": ["a"]"#),
         "providers[0].issuer_values"),
        (workos(r#""issuer": "https://api.workos.com""#, &format!(r#"{entra}, "issuer_values": []"#)), "providers[0].issuer_values"),
        (workos(r#""issuer": "https://api.workos.com""#, &format!(r#"{entra}, "issuer_values": ["a/b"]"#)), "providers[0].issuer_values[0]"),
        (workos(r#""issuer": "https://api.workos.com""#, &format!(r#"{entra}, "issuer_values": ["a.b"]"#)), "providers[0].issuer_values[0]"),
        // Review findings: an identifier is explicit or derived, not both; IPv6 closes;
        // prefixes are normal paths; a step-up cannot be optional.
        (with(r#"[{"resource": "https://a.example", "allowed_authorities": ["a.example"], "authorization_servers": ["https://as.example"]}]"#),
         "protected_resources[0].allowed_authorities"),
        (with(r#"[{"resource": "https://a.example", "authorization_servers": ["http://[::1/x"]}]"#),
         "protected_resources[0].authorization_servers[0]"),
        (with(r#"[{"resource": "https://a.example", "match": {"path_prefix": "/a/../b"}, "authorization_servers": ["https://as.example"]}]"#),
         "protected_resources[0].match.path_prefix"),
        (GOOD.replacen(r#""permissions": ["entities:read"]"#, r#""permissions": ["entities:read"], "acr_values": ["x"], "authentication": "optional""#, 1),
         "rules[1].authentication"),
    ];
    assert_errors_name(cases);
    let cfg = parse(
        workos(
            r#""issuer": "https://api.workos.com""#,
            &format!(r#"{entra}, "issuer_values": ["t1"]"#),
        )
        .as_bytes(),
        &env,
    )
    .expect("config");
    let p = &cfg.providers[0];
    assert!(p.accepts_issuer(Some("https://login.microsoftonline.com/t1/v2.0")));
    assert!(
        !p.accepts_issuer(Some("https://login.microsoftonline.com/t2/v2.0")),
        "an unlisted tenant is no provider's"
    );
    assert!(!p.accepts_issuer(Some("https://login.microsoftonline.com/a/b/v2.0")));
    assert!(!p.accepts_issuer(None));
    assert_eq!(p.issuer_values, vec!["t1".to_string()]);
    // Discovery for a template needs the document's path, and takes it.
    let discovery = |path: &str| {
        workos(r#""issuer": "https://api.workos.com""#, entra).replacen(
            r#""path": "/sso/jwks/client_123""#,
            &format!(r#""discovery": true{path}"#),
            1,
        )
    };
    assert_eq!(
        parse(discovery("").as_bytes(), &env).err().map(|e| e.field),
        Some("providers[0].jwks.path".to_string())
    );
    let cfg = parse(
        discovery(r#", "path": "/common/v2.0/.well-known/openid-configuration""#).as_bytes(),
        &env,
    )
    .expect("config");
    let d = cfg.providers[0]
        .jwks
        .as_ref()
        .and_then(|j| j.discovery.as_ref())
        .expect("discovery");
    assert_eq!(d.path, "/common/v2.0/.well-known/openid-configuration");
}

#[test]
fn inline_keys_are_public_usable_and_alone() {
    // RFC 7515 A.3's P-256 key: public members, then its private one.
    let (x, y) = (
        "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
    );
    let es = |jwks: &str| {
        GOOD.replacen(r#""algorithms": ["RS256"]"#, r#""algorithms": ["ES256"]"#, 1)
            .replacen(
                r#"{ "cluster": "workos_jwks", "authority": "api.workos.com", "path": "/sso/jwks/client_123" }"#,
                jwks,
                1,
            )
    };
    let key = |extra: &str| {
        format!(r#"{{"kty": "EC", "crv": "P-256", "kid": "a3", "x": "{x}", "y": "{y}"{extra}}}"#)
    };
    let inline = |keys: &str| format!(r#"{{"inline": {{"keys": [{keys}]}}}}"#);
    let off_curve = format!(
        r#"{{"kty": "EC", "crv": "P-256", "x": "{x}", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a1"}}"#
    );
    let cases: Vec<(String, &str)> = vec![
        (
            es(&inline(&key(
                r#", "d": "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI""#,
            ))),
            "providers[0].jwks.inline.keys[0].d",
        ),
        (es(&inline(&off_curve)), "providers[0].jwks.inline.keys[0]"),
        (
            es(&inline(&format!(
                r#"{}, {{"kty": "oct", "k": "c2VjcmV0"}}"#,
                key("")
            ))),
            "providers[0].jwks.inline.keys[1].k",
        ),
        (
            es(&inline(r#"{"kty": "EC", "crv": "P-256"}"#)),
            "providers[0].jwks.inline.keys[0]",
        ),
        (
            es(r#"{"inline": {"keys": []}}"#),
            "providers[0].jwks.inline.keys",
        ),
        (
            es(r#"{"inline": {"kty": "EC"}}"#),
            "providers[0].jwks.inline.keys",
        ),
        (
            es(&format!(
                r#"{{"cluster": "c", "inline": {{"keys": [{}]}}}}"#,
                key("")
            )),
            "providers[0].jwks.cluster",
        ),
    ];
    assert_errors_name(cases);
    let cfg = parse(es(&inline(&key(""))).as_bytes(), &env).expect("config");
    let p = &cfg.providers[0];
    assert!(p.jwks.is_none(), "nothing to fetch");
    assert_eq!(p.inline_keys.as_ref().map(|k| k.kids()), Some(vec!["a3"]));
}

#[test]
fn second_review_findings_are_refused() {
    let entra = r#""issuer": "https://login.microsoftonline.com/{tid}/v2.0""#;
    let first_template = GOOD.replacen(r#""issuer": "https://api.workos.com""#, entra, 1).replacen(
        r#"{ "name": "sdk", "algorithms": ["HS256"], "secret": { "env": "SDK_SECRET" } }"#,
        r#"{ "name": "one-tenant", "issuer": "https://login.microsoftonline.com/t1/v2.0", "algorithms": ["RS256"],
            "jwks": { "cluster": "c", "authority": "a", "path": "/k" } }"#,
        1,
    );
    let cases: Vec<(String, &str)> = vec![
        (first_template, "providers[1].issuer"),
        (GOOD.replacen(r#""issuer": "https://api.workos.com""#, r#""issuer": "https://a.example/{iss}""#, 1), "providers[0].issuer"),
        (GOOD.replacen(r#""algorithms": ["RS256"]"#, r#""algorithms": ["RS256"], "token_types": ["application/"]"#, 1),
         "providers[0].token_types[0]"),
        (GOOD.replacen(r#""permissions": ["entities:read"]"#, r#""permissions": ["entities:read"], "claim_values": {"hd": "x"}, "authentication": "optional""#, 1),
         "rules[1].authentication"),
    ];
    assert_errors_name(cases);
}

#[test]
fn mcp_errors_name_their_field() {
    let with = |top: &str, rule: &str| {
        format!(
            r#"{{"providers": [{{"name": "p", "algorithms": ["HS256"], "secret": {{"env": "SDK_SECRET"}}}}],
                {top} "rules": [{rule}]}}"#
        )
    };
    let resources = r#""protected_resources": [{"resource": "https://mcp.example.com/mcp", "authorization_servers": ["https://as.example.com"]}],"#;
    assert_errors_name(vec![
        (
            with(
                r#""mcp": {"max_body_bytes": 100},"#,
                r#"{"match": {"prefix": "/mcp", "mcp": {}}}"#,
            ),
            "mcp.max_body_bytes",
        ),
        (
            with(
                r#""mcp": {"max_list_bytes": 99999999},"#,
                r#"{"match": {"prefix": "/mcp", "mcp": {}}}"#,
            ),
            "mcp.max_list_bytes",
        ),
        (
            with(
                r#""mcp": {"bogus": 1},"#,
                r#"{"match": {"prefix": "/mcp", "mcp": {}}}"#,
            ),
            "mcp.bogus",
        ),
        (
            with(
                "",
                r#"{"match": {"prefix": "/mcp", "mcp": {"tools": ["a b"]}}}"#,
            ),
            "rules[0].match.mcp.tools[0]",
        ),
        (
            with(
                "",
                r#"{"match": {"prefix": "/mcp", "mcp": {"methods": [""]}}}"#,
            ),
            "rules[0].match.mcp.methods[0]",
        ),
        (
            with(
                "",
                r#"{"match": {"prefix": "/mcp", "mcp": {"tool": ["a"]}}}"#,
            ),
            "rules[0].match.mcp.tool",
        ),
        (
            with("", r#"{"match": {"prefix": "/mcp"}, "filter_lists": true}"#),
            "rules[0].filter_lists",
        ),
        (
            with(
                "",
                r#"{"match": {"prefix": "/mcp", "mcp": {"tools": ["a"]}}, "filter_lists": true}"#,
            ),
            "rules[0].filter_lists",
        ),
        (
            with(
                "",
                r#"{"match": {"prefix": "/mcp", "mcp": {}}, "audiences": ["{resource}"]}"#,
            ),
            "rules[0].audiences[0]",
        ),
        (
            with(
                "",
                r#"{"match": {"prefix": "/mcp", "mcp": {"resources": ["FILE:///private/"]}}}"#,
            ),
            "rules[0].match.mcp.resources[0]",
        ),
        (
            with(
                "",
                r#"{"match": {"prefix": "/mcp", "mcp": {"resources": ["https://Docs.example.com/"]}}}"#,
            ),
            "rules[0].match.mcp.resources[0]",
        ),
        (
            with(
                resources,
                r#"{"match": {"prefix": "/mcp", "mcp": {}}, "audiences": ["{resurce}"]}"#,
            ),
            "rules[0].audiences[0]",
        ),
        (
            with(
                resources,
                r#"{"match": {"prefix": "/mcp", "mcp": {}, "graphql": {}}}"#,
            ),
            "rules[0].match",
        ),
        (
            with(
                resources,
                r#"{"match": {"prefix": "/mcp", "mcp": {}}, "public": true, "audiences": ["{resource}"]}"#,
            ),
            "rules[0].public",
        ),
    ]);
    // What is accepted: limits, list filtering by a rule that can match a list, and the
    // resource audience with protected_resources.
    let ok = with(
        &format!(r#""mcp": {{"max_body_bytes": 4096, "max_list_bytes": 65536}}, {resources}"#),
        r#"{"match": {"prefix": "/mcp", "mcp": {"methods": ["tools/list"], "resources": ["file:///public/", "file:", "https://docs.example.com/a"]}}, "filter_lists": true, "audiences": ["{resource}", "api"]}"#,
    );
    let cfg = parse(ok.as_bytes(), &env).expect("valid");
    assert_eq!(cfg.mcp.max_body_bytes, 4096);
    assert_eq!(cfg.mcp.max_list_bytes, 65536);
    assert!(cfg.rules[0].filter_lists);
    assert!(cfg.rules[0].audiences.resource);
    assert_eq!(cfg.rules[0].audiences.exact, ["api"]);
}
