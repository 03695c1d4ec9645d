//! How a compact JWS is parsed (tokens and DPoP proofs alike). Nothing here verifies
//! anything: see [`crate::verify`].

use crate::encoding::b64url;
use crate::strict_json;
use serde_json::{Map, Value};

/// The protected header fields bearer-guard reads. Others (`jwk`, `jku`, `x5u`, `x5c`…)
/// are ignored: keys only ever come from the provider's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `alg`, exactly as sent.
    pub alg: String,
    /// `kid`, if any.
    pub kid: Option<String>,
    /// `typ`, if present as a string (RFC 9068: `at+jwt` for access tokens).
    pub typ: Option<String>,
}

/// A parsed, not yet verified, compact JWS carrying a JSON claim set.
#[derive(Debug, Clone)]
pub struct Jws<'a> {
    /// Protected header.
    pub header: Header,
    /// Claim set.
    pub claims: Map<String, Value>,
    /// `BASE64URL(header) '.' BASE64URL(payload)`: the bytes that were signed.
    pub signing_input: &'a str,
    /// The payload segment, base64url (forwarded as is when configured).
    pub payload_b64: &'a str,
    /// Decoded signature.
    pub signature: Vec<u8>,
}

/// Why a token could not be parsed (for debug logs; every case is a 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Longer than `max_token_bytes`.
    TooLong,
    /// Not three dot-separated parts.
    Shape,
    /// A part is not canonical unpadded base64url.
    Base64,
    /// The header is not a JSON object with a string `alg` (or has duplicate keys).
    Header,
    /// The header lists `crit` extensions, none of which we understand.
    Crit,
    /// The payload is not a JSON object (or has duplicate keys).
    Payload,
}

impl ParseError {
    /// Short description for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ParseError::TooLong => "token too long",
            ParseError::Shape => "not a compact JWS",
            ParseError::Base64 => "bad base64url",
            ParseError::Header => "bad header",
            ParseError::Crit => "unsupported crit",
            ParseError::Payload => "payload is not a JSON object",
        }
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for ParseError {}

/// The JWS layer of a token: header parsed, payload still bytes.
#[derive(Debug, Clone)]
pub struct RawJws<'a> {
    /// Protected header.
    pub header: Header,
    /// Decoded payload bytes.
    pub payload: Vec<u8>,
    /// `BASE64URL(header) '.' BASE64URL(payload)`.
    pub signing_input: &'a str,
    /// The payload segment, base64url.
    pub payload_b64: &'a str,
    /// Decoded signature.
    pub signature: Vec<u8>,
}

/// A compact JWS taken apart: the whole protected header (strict JSON, no `crit`), the
/// payload and signature decoded. What tokens and DPoP proofs share.
#[derive(Debug, Clone)]
pub struct Compact<'a> {
    /// The protected header, every member.
    pub header: Map<String, Value>,
    /// Decoded payload bytes.
    pub payload: Vec<u8>,
    /// `BASE64URL(header) '.' BASE64URL(payload)`.
    pub signing_input: &'a str,
    /// The payload segment, base64url.
    pub payload_b64: &'a str,
    /// Decoded signature (never empty).
    pub signature: Vec<u8>,
}

/// Splits and decodes a compact JWS (RFC 7515 §7.1): three canonical base64url parts, a
/// JSON-object header without duplicate keys or `crit`, a non-empty signature. Size is
/// checked before any decoding.
pub fn compact(jws: &str, max_len: usize) -> Result<Compact<'_>, ParseError> {
    if jws.len() > max_len {
        return Err(ParseError::TooLong);
    }
    let mut parts = jws.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::Shape);
    };
    // An empty payload is a valid JWS (and then not a claim set); an empty signature
    // is `alg: none` or a stripped signature and is never accepted.
    if h.is_empty() || s.is_empty() {
        return Err(ParseError::Shape);
    }
    let header_bytes = b64url(h).ok_or(ParseError::Base64)?;
    let payload = b64url(p).ok_or(ParseError::Base64)?;
    let signature = b64url(s).ok_or(ParseError::Base64)?;
    let header = strict_json::parse_object(&header_bytes).ok_or(ParseError::Header)?;
    if header.contains_key("crit") {
        return Err(ParseError::Crit);
    }
    let signing_input = jws.get(..h.len() + 1 + p.len()).ok_or(ParseError::Shape)?;
    Ok(Compact {
        header,
        payload,
        signing_input,
        payload_b64: p,
        signature,
    })
}

/// Splits and decodes a compact JWS (RFC 7515 §7.1) and reads its protected header's
/// `alg` and `kid`. Size is checked before any decoding.
pub fn split(token: &str, max_len: usize) -> Result<RawJws<'_>, ParseError> {
    let mut c = compact(token, max_len)?;
    // The header's strings are moved out of the parsed map, not copied.
    let alg = match c.header.remove("alg") {
        Some(Value::String(a)) => a,
        _ => return Err(ParseError::Header),
    };
    let kid = match c.header.remove("kid") {
        None => None,
        Some(Value::String(k)) => Some(k),
        Some(_) => return Err(ParseError::Header),
    };
    let typ = match c.header.remove("typ") {
        Some(Value::String(t)) => Some(t),
        _ => None,
    };
    Ok(RawJws {
        header: Header { alg, kid, typ },
        payload: c.payload,
        signing_input: c.signing_input,
        payload_b64: c.payload_b64,
        signature: c.signature,
    })
}

/// Parses a compact JWS whose payload is a JSON claim set.
pub fn parse(token: &str, max_len: usize) -> Result<Jws<'_>, ParseError> {
    let raw = split(token, max_len)?;
    let claims = strict_json::parse_object(&raw.payload).ok_or(ParseError::Payload)?;
    Ok(Jws {
        header: raw.header,
        claims,
        signing_input: raw.signing_input,
        payload_b64: raw.payload_b64,
        signature: raw.signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::extract::{extract_authorization, extract_bearer, Scheme};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    #[test]
    fn bearer_extraction() {
        let cases: Vec<(Vec<&str>, Option<&str>)> = vec![
            (vec!["Bearer abc"], Some("abc")),
            (vec!["bearer abc"], Some("abc")),
            (vec!["BEARER abc"], Some("abc")),
            (vec![], None),
            (vec!["Token abc"], None),
            (vec!["abc"], None),
            (vec!["Bearer"], None),
            (vec!["Bearer "], None),
            (vec!["Bearer  abc"], None),
            (vec!["Bearerabc"], None),
            (vec!["Basic dXNlcjpwYXNz"], None),
            (vec!["Bearer a", "Bearer b"], None),
            (vec!["Bearer a,Bearer b"], None),
            (vec!["Bearer a b"], None),
            (vec!["Bearer a\tb"], None),
            (vec!["Bearer a\u{a0}b"], Some("a\u{a0}b")),
            (vec!["Bearer é"], Some("é")),
            (vec!["Beaü abc"], None),
        ];
        for (values, want) in cases {
            assert_eq!(extract_bearer(&values), want, "{values:?}");
        }
        fn dpop(v: &str, on: bool) -> Option<(Scheme, &str)> {
            extract_authorization(&[v], on)
        }
        assert_eq!(dpop("DPoP a.b.c", true), Some((Scheme::Dpop, "a.b.c")));
        assert_eq!(dpop("dpop a.b.c", true), Some((Scheme::Dpop, "a.b.c")));
        assert_eq!(dpop("DPoP a.b.c", false), None, "no provider takes DPoP");
        assert_eq!(dpop("DPoP  a.b.c", true), None);
        assert_eq!(dpop("DPoP a,DPoP b", true), None);
        assert_eq!(dpop("Bearer a.b.c", true), Some((Scheme::Bearer, "a.b.c")));
    }

    fn enc(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn parse_cases() {
        let good_h = enc(r#"{"alg":"RS256","kid":"k1","jku":"https://evil"}"#);
        let good_p = enc(r#"{"sub":"u1","exp":1}"#);
        let sig = enc("sig");
        let ok = format!("{good_h}.{good_p}.{sig}");
        let jws = parse(&ok, 8192).expect("parses");
        assert_eq!(
            jws.header,
            Header {
                alg: "RS256".into(),
                kid: Some("k1".into()),
                typ: None
            }
        );
        assert_eq!(jws.signing_input, format!("{good_h}.{good_p}"));
        assert_eq!(jws.signature, b"sig");
        assert_eq!(jws.claims.get("sub").and_then(Value::as_str), Some("u1"));

        let cases: Vec<(String, ParseError)> = vec![
            (format!("{good_h}.{good_p}"), ParseError::Shape),
            (format!("{good_h}.{good_p}.{sig}.x"), ParseError::Shape),
            (format!("{good_h}.{good_p}."), ParseError::Shape),
            (format!(".{good_p}.{sig}"), ParseError::Shape),
            (format!("{good_h}..{sig}"), ParseError::Payload),
            (format!("{good_h}=.{good_p}.{sig}"), ParseError::Base64),
            (format!("{good_h}.{good_p} .{sig}"), ParseError::Base64),
            (format!("{good_h}.{good_p}.{sig}+"), ParseError::Base64),
            // "c2k" is canonical for "si"; "c2l" sets trailing bits and must be refused.
            (format!("{good_h}.{good_p}.c2l"), ParseError::Base64),
            (format!("{}.{good_p}.{sig}", enc("[1]")), ParseError::Header),
            (
                format!("{}.{good_p}.{sig}", enc(r#"{"alg":1}"#)),
                ParseError::Header,
            ),
            (
                format!("{}.{good_p}.{sig}", enc(r#"{"kid":"x"}"#)),
                ParseError::Header,
            ),
            (
                format!("{}.{good_p}.{sig}", enc(r#"{"alg":"RS256","kid":5}"#)),
                ParseError::Header,
            ),
            (
                format!("{}.{good_p}.{sig}", enc(r#"{"alg":"RS256","alg":"none"}"#)),
                ParseError::Header,
            ),
            (
                format!(
                    "{}.{good_p}.{sig}",
                    enc(r#"{"alg":"RS256","crit":["exp"],"exp":1}"#)
                ),
                ParseError::Crit,
            ),
            (
                format!("{good_h}.{}.{sig}", enc("plain text")),
                ParseError::Payload,
            ),
            (
                format!("{good_h}.{}.{sig}", enc(r#"{"sub":"a","sub":"b"}"#)),
                ParseError::Payload,
            ),
            ("x".repeat(9000), ParseError::TooLong),
            ("garbage".to_string(), ParseError::Shape),
        ];
        for (token, want) in cases {
            assert_eq!(parse(&token, 8192).err(), Some(want), "{token}");
        }
    }
}
