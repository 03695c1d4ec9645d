//! Certificate-bound tokens (RFC 8705): the client-certificate hash a token's
//! `cnf.x5t#S256` names, from the TLS connection (Envoy's hex digest) or a trusted
//! `x-forwarded-client-cert`, and a PEM reader for tools.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// The DER of the first certificate of a PEM text (`-----BEGIN CERTIFICATE-----`), for
/// tools that take a certificate file (`explain --client-cert`, the dev IdP).
pub fn pem_certificate_der(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .ok()
        .filter(|d| !d.is_empty())
}

/// `cnf.x5t#S256` of a certificate whose SHA-256 is `hex` (hex digits, either case).
pub fn x5t_s256(hex: &str) -> Option<String> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, d) in digest.iter_mut().enumerate() {
        *d = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(URL_SAFE_NO_PAD.encode(digest))
}

/// The `Hash=` of the last element of an `x-forwarded-client-cert` value — the one the
/// proxy in front of Envoy appended about its own client (earlier elements are what that
/// client sent). Quoted values (`Subject="CN=a,O=b"`) may hold commas and semicolons.
pub fn forwarded_cert_hash(xfcc: &str) -> Option<&str> {
    let last = split_unquoted(xfcc, ',').last()?;
    split_unquoted(last, ';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim().eq_ignore_ascii_case("hash").then(|| v.trim())
    })
}

/// `s` split at `sep` outside double quotes (a backslash escapes inside them).
fn split_unquoted(s: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    let mut escaped = false;
    let mut start = 0;
    let mut cuts = Vec::new();
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                cuts.push((start, i));
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    cuts.push((start, s.len()));
    cuts.into_iter().filter_map(move |(a, b)| s.get(a..b))
}
