use super::dpop::{access_token_hash, normalize_uri};
use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;

#[test]
fn rfc7638_thumbprint_example() {
    // RFC 7638 §3.1: the RSA key of RFC 7517 appendix A.1 (optional members ignored).
    let jwk = json!({"kty": "RSA", "alg": "RS256", "kid": "2011-04-29", "e": "AQAB",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"});
    let map = jwk.as_object().cloned().unwrap_or_default();
    assert_eq!(
        jwk_thumbprint(&map).as_deref(),
        Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
    );
    // A required member missing, or an unknown key type: no thumbprint.
    let mut no_e = map.clone();
    no_e.remove("e");
    assert_eq!(jwk_thumbprint(&no_e), None);
    let oct = json!({"kty": "oct", "k": "AAAA"});
    assert_eq!(jwk_thumbprint(oct.as_object().unwrap()), None);
}

#[test]
fn rfc9449_ath_example() {
    // RFC 9449 §4.2 (figure 5): the access token's hash.
    assert_eq!(
        access_token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
        "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
    );
}

#[test]
fn uris_normalize_before_comparison() {
    let same = [
        (
            "https://api.example.com/v1/things",
            "https://api.example.com/v1/things",
        ),
        (
            "HTTPS://API.Example.COM/v1/things",
            "https://api.example.com/v1/things",
        ),
        (
            "https://api.example.com:443/v1/things",
            "https://api.example.com/v1/things",
        ),
        ("http://api.example.com:80/x", "http://api.example.com/x"),
        (
            "http://api.example.com:8080/x",
            "http://api.example.com:8080/x",
        ),
        (
            "https://api.example.com:0443/x",
            "https://api.example.com/x",
        ),
        ("https://api.example.com", "https://api.example.com/"),
        ("https://api.example.com:/x", "https://api.example.com/x"),
        (
            "https://api.example.com/%7Euser/a%2fb",
            "https://api.example.com/~user/a%2Fb",
        ),
        ("https://[::1]:8443/x", "https://[::1]:8443/x"),
        ("https://[::1]:443/x", "https://[::1]/x"),
    ];
    for (uri, want) in same {
        assert_eq!(normalize_uri(uri).as_deref(), Some(want), "{uri}");
    }
    // The path keeps its case; a port of another scheme is not dropped.
    assert_ne!(normalize_uri("https://a/X"), normalize_uri("https://a/x"));
    assert_ne!(normalize_uri("https://a:80/"), normalize_uri("https://a/"));
    let refused = [
        "https://api.example.com/x?q=1",
        "https://api.example.com/x#f",
        "https://user@api.example.com/x",
        "ftp://api.example.com/x",
        "api.example.com/x",
        "https:///x",
        "https://:8080/x",
        "https://:443/x",
        "https://[]/x",
        "https://[::1]8443/x",
        "https://api.example.com/a/../x",
        "https://api.example.com/./x",
        "https://api.example.com/%zz",
        "https://api.example.com/%4",
        "https://api.example.com/a b",
        "https://api.example.com:99999/x",
        "https://api.example.com:x/x",
        "https://api example.com/x",
    ];
    for uri in refused {
        assert_eq!(normalize_uri(uri), None, "{uri}");
    }
}

#[test]
fn origins() {
    assert_eq!(
        normalize_origin("HTTPS://Api.Example.com:443/").as_deref(),
        Some("https://api.example.com")
    );
    assert_eq!(
        normalize_origin("http://a:8080").as_deref(),
        Some("http://a:8080")
    );
    for bad in ["https://a/v1", "https://a/v1/", "https://a?x", "a.example"] {
        assert_eq!(normalize_origin(bad), None, "{bad}");
    }
}

#[test]
fn request_uri_from_scheme_and_authority_or_base() {
    let req = crate::request::Request {
        authority: "API.test:443".into(),
        path: "/v1/things?page=2".into(),
        headers: crate::request::Headers::from_pairs([(":scheme", "https")]),
        ..Default::default()
    };
    assert_eq!(
        request_htu(&req, None).as_deref(),
        Some("https://api.test/v1/things")
    );
    assert_eq!(
        request_htu(&req, Some("https://public.example")).as_deref(),
        Some("https://public.example/v1/things")
    );
}

#[test]
fn certificate_hashes() {
    let hex = "0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789abcdef";
    let want = URL_SAFE_NO_PAD.encode(
        (0..32)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect::<Vec<u8>>(),
    );
    assert_eq!(x5t_s256(hex).as_deref(), Some(want.as_str()));
    assert_eq!(x5t_s256(&hex[2..]), None);
    assert_eq!(x5t_s256(&format!("{}zz", &hex[2..])), None);

    // The last element is the one the trusted proxy appended; quoted values may hold
    // the separators.
    let xfcc =
        r#"By=spiffe://a;Hash=aaaa;Subject="CN=x,O=y;z",By=spiffe://b;Hash=bbbb;URI=spiffe://c"#;
    assert_eq!(forwarded_cert_hash(xfcc), Some("bbbb"));
    assert_eq!(
        forwarded_cert_hash(r#"Hash=cccc;Subject="CN=a,b""#),
        Some("cccc")
    );
    // An escaped quote does not end a quoted value; a backslash outside quotes is text.
    assert_eq!(
        forwarded_cert_hash(r#"Hash=aaaa;Subject="CN=x\",Hash=bbbb""#),
        Some("aaaa")
    );
    assert_eq!(forwarded_cert_hash(r"Hash=aaaa\,Hash=bbbb"), Some("bbbb"));
    assert_eq!(forwarded_cert_hash("By=spiffe://b;URI=x"), None);
    assert_eq!(forwarded_cert_hash(r#"Hash=aaaa,Subject="x""#), None);
}

#[test]
fn pem_certificates_decode_to_their_der() {
    let der = b"\x30\x82\x01\x0a certificate bytes";
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let (a, b) = b64.split_at(10);
    let pem = format!(
        "subject=CN=a\n-----BEGIN CERTIFICATE-----\n{a}\n{b}\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    );
    assert_eq!(pem_certificate_der(&pem).as_deref(), Some(&der[..]));
    assert_eq!(pem_certificate_der("no certificate"), None);
    assert_eq!(
        pem_certificate_der("-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----"),
        None
    );
}
