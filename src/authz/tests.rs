//! Unit tests of grants, requirements, membership and header preconditions.

use super::grants::scope_grants;
use super::matcher::Captures;
use super::*;
use crate::request::Request;
use crate::token::ClaimPath;
use serde_json::json;
use serde_json::Value;
use std::collections::BTreeMap;

#[test]
fn scope_algebra() {
    let cases: Vec<(&str, &str, bool)> = vec![
        // plain permissions: exact match only
        ("entities:read", "entities:read", true),
        ("entities:read", "entities:write", false),
        ("admin", "admin", true),
        ("admin", "admin:x", false),
        ("Admin", "admin", false),
        ("*", "anything:at:all", true),
        ("*", "admin", true),
        ("*", "", false),
        // hierarchical: wildcard per segment
        ("index:read:*", "index:read:9f1c2a", true),
        ("index:read:*", "index:write:9f1c2a", false),
        ("index:*:*", "index:read:x", true),
        ("index:*:*", "index:write:x", true),
        ("*:read:*", "index:read:x", true),
        ("*:read:*", "index:write:x", false),
        ("*:*:*", "events:write:y", true),
        ("index:*:abc", "index:read:abc", true),
        ("index:*:abc", "index:read:abd", false),
        ("index:read:abc", "index:read:abc", true),
        ("index:read:abc", "index:read:ABC", false),
        ("INDEX:read:*", "index:read:x", false),
        // segment counts must agree
        ("index:read:*", "index:read", false),
        ("index:read:*", "index:read:x:y", false),
        ("index:*", "index:read:x", false),
        ("index:read", "index:read:x", false),
        // empty segments never match
        ("index:read:", "index:read:", false),
        ("index::*", "index::x", false),
        ("index:read:*", "index:read:", false),
        (":read:*", ":read:x", false),
        // '*' is a whole-segment wildcard only; a required '*' needs a granted '*'
        ("index:re*:x", "index:read:x", false),
        ("index:read:abc", "index:read:*", false),
        ("index:read:*", "index:read:*", true),
        ("", "", false),
    ];
    for (granted, required, want) in cases {
        assert_eq!(
            scope_grants(granted, required),
            want,
            "grant {granted:?} vs required {required:?}"
        );
    }
}

fn names() -> ClaimNames {
    ClaimNames::default()
}

#[test]
fn grants_from_each_claim() {
    let roles: BTreeMap<String, Vec<String>> = [
        ("admin".to_string(), vec!["*".to_string()]),
        ("furnisher".to_string(), vec!["furnish:write".to_string()]),
    ]
    .into();
    let cases: Vec<(Value, &str, bool)> = vec![
        (
            json!({"permissions": ["entities:read"]}),
            "entities:read",
            true,
        ),
        (
            json!({"permissions": ["entities:read"]}),
            "consent:write",
            false,
        ),
        (json!({"permissions": "a b"}), "b", true),
        (json!({"permissions": [1, "x"]}), "x", true),
        (json!({"role": "furnisher"}), "furnish:write", true),
        (
            json!({"role": ["viewer", "furnisher"]}),
            "furnish:write",
            true,
        ),
        (json!({"role": "admin"}), "anything", true),
        (json!({"role": "unknown"}), "anything", false),
        (
            json!({"scope": "index:read:* events:write:*"}),
            "events:write:u1",
            true,
        ),
        (json!({"scope": ["index:read:*"]}), "index:read:u1", true),
        (json!({"scope": "index:read:*"}), "index:write:u1", false),
        (json!({}), "x", false),
    ];
    for (claims, required, want) in cases {
        let map = claims.as_object().cloned().unwrap_or_default();
        let grants = Grants::from_claims(&map, &names(), &roles);
        assert_eq!(
            grants.allows(required),
            want,
            "{claims} requires {required}"
        );
    }
}

#[test]
fn namespaced_claim_names() {
    let mut n = names();
    n.permissions = ClaimPath::top("https://api.solo.one/permissions");
    let claims = json!({"https://api.solo.one/permissions": ["workflow:run"]});
    let map = claims.as_object().cloned().unwrap_or_default();
    let roles = BTreeMap::new();
    assert!(Grants::from_claims(&map, &n, &roles).allows("workflow:run"));
}

#[test]
fn nested_claims_through_pointers() {
    let path = |p: &str| ClaimPath::parse(p).unwrap_or_else(|_| ClaimPath::top("bad"));
    let n = ClaimNames {
        permissions: path("/resource_access/my-api/roles"),
        role: path("/realm_access/roles"),
        scope: ClaimPath::top("scope"),
    };
    let roles: BTreeMap<String, Vec<String>> =
        [("admin".to_string(), vec!["entities:*".to_string()])].into();
    let claims = json!({"realm_access": {"roles": ["offline_access", "admin"]},
        "resource_access": {"my-api": {"roles": ["reports:read"]}}});
    let map = claims.as_object().cloned().unwrap_or_default();
    let grants = Grants::from_claims(&map, &n, &roles);
    assert!(grants.allows("entities:write"), "realm role expanded");
    assert!(grants.allows("reports:read"), "client role as permission");
    assert!(!grants.allows("other:read"));
    let flat = json!({"realm_access.roles": ["admin"]});
    let map = flat.as_object().cloned().unwrap_or_default();
    assert!(!Grants::from_claims(&map, &n, &roles).allows("entities:write"));
}

fn req(path: &str, headers: &[(&str, &str)]) -> Request {
    Request::for_test(path, headers)
}

#[test]
fn templates_render_from_the_request() {
    let t = |s: &str| Template::compile(s, &["network_id"], "t").expect("compiles");
    let caps: Captures = vec![("network_id".into(), "n-1".into())];
    let r = req(
        "/x?network_id=q-1&evil=a:b",
        &[("solenya-index-uuid", "u-1"), ("star", "*")],
    );
    let cases: Vec<(&str, Option<&str>)> = vec![
        (
            "index:read:{header.solenya-index-uuid}",
            Some("index:read:u-1"),
        ),
        (
            "index:read:{header.Solenya-Index-UUID}",
            Some("index:read:u-1"),
        ),
        ("net:{query.network_id}", Some("net:q-1")),
        ("net:{path.network_id}:x", Some("net:n-1:x")),
        ("plain", Some("plain")),
        ("index:read:{header.missing}", None),
        ("index:read:{header.star}", None),
        ("index:read:{query.evil}", None),
    ];
    for (text, want) in cases {
        assert_eq!(t(text).render(&r, &caps).as_deref(), want, "{text}");
    }
    for bad in [
        "{cookie.x}",
        "{header.}",
        "a{header.x",
        "a}b",
        "{path.other}",
    ] {
        assert!(
            Template::compile(bad, &["network_id"], "t").is_err(),
            "{bad}"
        );
    }
}

#[test]
fn requirements_all_of_and_any_of() {
    let t = |s: &str| Template::compile(s, &[], "t").expect("compiles");
    let roles = BTreeMap::new();
    let claims = json!({"permissions": ["a", "b"]});
    let map = claims.as_object().cloned().unwrap_or_default();
    let grants = Grants::from_claims(&map, &names(), &roles);
    let r = req("/", &[]);
    let check = |all: &[&str], any: &[&str]| {
        Requirement {
            all_of: all.iter().map(|s| t(s)).collect(),
            any_of: any.iter().map(|s| t(s)).collect(),
        }
        .check(&grants, &r, &Vec::new())
    };
    assert!(check(&["a", "b"], &[]).is_ok());
    assert_eq!(
        check(&["a", "c"], &[]),
        Err(Refused::Permission("c".to_string()))
    );
    assert!(check(&[], &["c", "b"]).is_ok());
    assert!(check(&[], &["c", "d"]).is_err());
    assert!(check(&["a"], &["c", "b"]).is_ok());
    assert!(check(&[], &[]).is_ok());
}

#[test]
fn membership() {
    let m = Membership {
        source: RequestValue::Query("network_id".into()),
        claim: ClaimPath::top("networks"),
    };
    let cases: Vec<(Value, &str, bool)> = vec![
        (json!({"networks": ["n1", "n2"]}), "/x?network_id=n2", true),
        (json!({"networks": ["n1", "n2"]}), "/x?network_id=n3", false),
        (json!({"networks": "n1"}), "/x?network_id=n1", true),
        (json!({"networks": ["n1"]}), "/x", false),
        (
            json!({"networks": ["n1"]}),
            "/x?network_id=n1&network_id=n3",
            false,
        ),
        (json!({}), "/x?network_id=n1", false),
    ];
    for (claims, path, want) in cases {
        let map = claims.as_object().cloned().unwrap_or_default();
        assert_eq!(
            m.holds(&map, &req(path, &[]), &Vec::new()),
            want,
            "{claims} {path}"
        );
    }
    // A path segment is decoded per RFC 3986: `+` is a plus sign, not a space, and a
    // malformed escape matches nothing.
    let by_path = Membership {
        source: RequestValue::Path("org".into()),
        claim: ClaimPath::top("orgs"),
    };
    let cases = vec![
        ("a+b", json!({"orgs": ["a b"]}), false),
        ("a+b", json!({"orgs": ["a+b"]}), true),
        ("a%20b", json!({"orgs": ["a b"]}), true),
        ("%+4", json!({"orgs": ["\u{4}", "%+4"]}), false),
    ];
    for (segment, claims, want) in cases {
        let map = claims.as_object().cloned().unwrap_or_default();
        let captures = vec![("org".to_string(), segment.to_string())];
        assert_eq!(
            by_path.holds(&map, &req("/", &[]), &captures),
            want,
            "{segment} {claims}"
        );
    }
}

#[test]
#[allow(clippy::type_complexity)]
fn header_preconditions() {
    let v7 = "01890a5d-ac96-774b-bcce-b302099a8057";
    let v4 = "9f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b";
    let cases: Vec<(Vec<(&str, &str)>, HeaderFormat, Result<(), &str>)> = vec![
        (vec![("x-u", v7)], HeaderFormat::Uuidv7, Ok(())),
        (
            vec![("x-u", "01890A5D-AC96-774B-BCCE-B302099A8057")],
            HeaderFormat::Uuidv7,
            Ok(()),
        ),
        (
            vec![("x-u", v4)],
            HeaderFormat::Uuidv7,
            Err("X-U must be a valid UUIDv7"),
        ),
        (vec![("x-u", v4)], HeaderFormat::Uuid, Ok(())),
        (
            vec![("x-u", "nope")],
            HeaderFormat::Uuid,
            Err("X-U must be a valid UUID"),
        ),
        (
            vec![("x-u", "01890a5d-ac96-774b-7cce-b302099a8057")],
            HeaderFormat::Uuidv7,
            Err("X-U must be a valid UUIDv7"),
        ),
        (vec![], HeaderFormat::Present, Err("X-U header is required")),
        (
            vec![("x-u", " ")],
            HeaderFormat::Present,
            Err("X-U header is required"),
        ),
        (
            vec![("x-u", "a"), ("x-u", "b")],
            HeaderFormat::Present,
            Err("X-U header must be sent once"),
        ),
        (vec![("x-u", "anything")], HeaderFormat::Present, Ok(())),
    ];
    for (headers, format, want) in cases {
        let got = check_header(&req("/", &headers), "x-u", "X-U", format);
        assert_eq!(
            got,
            want.map_err(|d| Refused::Header(d.to_string())),
            "{headers:?} {format:?}"
        );
    }
}
