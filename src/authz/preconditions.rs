//! Header preconditions of a rule: a header that must be present, a UUID, a UUIDv7.

use super::Refused;
use crate::request::Request;

/// Required format of a request header checked by a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderFormat {
    /// Present and non-empty.
    Present,
    /// An RFC 9562 UUID in 8-4-4-4-12 hex form.
    Uuid,
    /// A version-7 UUID.
    Uuidv7,
}

/// Checks a header precondition; the error carries the reply's `detail`.
pub fn check_header(
    req: &Request,
    lower: &str,
    display: &str,
    format: HeaderFormat,
) -> Result<(), Refused> {
    let count = req.header_values(lower).count();
    let value = req.header(lower).map(str::trim).filter(|v| !v.is_empty());
    let Some(value) = value else {
        return Err(Refused::Header(if count > 1 {
            format!("{display} header must be sent once")
        } else {
            format!("{display} header is required")
        }));
    };
    match format {
        HeaderFormat::Present => Ok(()),
        HeaderFormat::Uuid if is_uuid(value) => Ok(()),
        HeaderFormat::Uuid => Err(Refused::Header(format!("{display} must be a valid UUID"))),
        HeaderFormat::Uuidv7
            if is_uuid(value) && uuid_version(value) == Some('7') && uuid_variant_ok(value) =>
        {
            Ok(())
        }
        HeaderFormat::Uuidv7 => Err(Refused::Header(format!("{display} must be a valid UUIDv7"))),
    }
}

fn is_uuid(v: &str) -> bool {
    v.len() == 36
        && v.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

fn uuid_version(v: &str) -> Option<char> {
    v.chars().nth(14)
}

fn uuid_variant_ok(v: &str) -> bool {
    matches!(
        v.chars().nth(19).map(|c| c.to_ascii_lowercase()),
        Some('8' | '9' | 'a' | 'b')
    )
}
