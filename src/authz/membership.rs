//! A rule's domain constraint: a request value must be one of a claim's values.

use super::grants::for_each_string;
use super::matcher::Captures;
use super::requirements::RequestValue;
use crate::request::Request;
use crate::token::ClaimPath;
use serde_json::{Map, Value};

/// A domain constraint: a request value must be one of a claim's values.
#[derive(Debug, Clone)]
pub struct Membership {
    /// Where the request value comes from.
    pub source: RequestValue,
    /// The claim listing allowed values (string or array).
    pub claim: ClaimPath,
}

impl Membership {
    /// Whether the request value is present and listed in the claim.
    pub fn holds(&self, claims: &Map<String, Value>, req: &Request, captures: &Captures) -> bool {
        let Some(value) = self.source.read(req, captures) else {
            return false;
        };
        let mut found = false;
        for_each_string(self.claim.get(claims), |s| found |= s == value);
        found
    }
}
