//! `providers[i].token`: where a provider's tokens come from (the `Authorization`
//! header by default, another header with a prefix, a cookie or a query parameter) and
//! whether the credential is removed before the upstream.

use super::reader::Fields;
use crate::error::{err, ConfigError};
use crate::token::TokenSource;

/// Reads `token` of a provider: the source, and whether to strip the credential.
pub(super) fn read(provider: &Fields) -> Result<(TokenSource, bool), ConfigError> {
    Ok(
        match provider.object("token", &["header", "prefix", "cookie", "query", "strip"])? {
            None => (TokenSource::Authorization, false),
            Some(g) => {
                let source = match (
                    g.opt_string("header")?,
                    g.opt_string("cookie")?,
                    g.opt_string("query")?,
                ) {
                    (None, None, None) => TokenSource::Authorization,
                    (Some(h), None, None) => TokenSource::Header {
                        name: h.to_ascii_lowercase(),
                        prefix: g.string_or("prefix", "")?,
                    },
                    (None, Some(c), None) => TokenSource::Cookie(c),
                    (None, None, Some(q)) => TokenSource::Query(q),
                    _ => return err(g.path("header"), "at most one of header, cookie and query"),
                };
                let named = |v: &str, key: &str| {
                    if v.is_empty() || v.contains(['=', ';', ',', '&', ' ']) {
                        err(g.path(key), "not a usable name")
                    } else {
                        Ok(())
                    }
                };
                match &source {
                    TokenSource::Header { name, .. } => named(name, "header")?,
                    TokenSource::Cookie(c) => named(c, "cookie")?,
                    TokenSource::Query(q) => named(q, "query")?,
                    TokenSource::Authorization => {}
                }
                if g.get("prefix").is_some() && !matches!(source, TokenSource::Header { .. }) {
                    return err(g.path("prefix"), "only with header");
                }
                (source, g.bool_or("strip", false)?)
            }
        },
    )
}
