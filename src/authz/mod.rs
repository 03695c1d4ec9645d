//! Authorization: which rule a request falls under ([`matcher`]), its header
//! preconditions ([`preconditions`]), what a token grants ([`grants`]), the rule's
//! requirements ([`requirements`]) and domain constraint ([`membership`]), and the
//! identity a verified token carries upstream ([`identity`]).

pub mod grants;
pub mod identity;
pub mod matcher;
pub mod membership;
pub mod preconditions;
pub mod requirements;
pub mod step_up;

pub use self::grants::{ClaimNames, GrantSource, Grants};

/// Why an authorization check refused, naming what failed: a header precondition's
/// reply `detail`, or what the log's note names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// A header precondition failed: the 400's `detail`.
    Header(String),
    /// No grant covers this requirement.
    Permission(String),
    /// The request value is not in this claim.
    Membership(String),
    /// This required claim is missing.
    MissingClaim(String),
    /// The claim (or account field) for this header has control characters.
    UnsafeHeader(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Header(detail) => f.write_str(detail),
            Refused::Permission(p) => write!(f, "missing permission {p}"),
            Refused::Membership(claim) => write!(f, "request value not in claim {claim}"),
            Refused::MissingClaim(claim) => write!(f, "required claim {claim} missing"),
            Refused::UnsafeHeader(h) => write!(f, "claim for {h} has control characters"),
        }
    }
}

impl std::error::Error for Refused {}
pub use self::membership::Membership;
pub use self::preconditions::{check_header, HeaderFormat};
pub use self::requirements::{RequestValue, Requirement, RequirementCheck, Template};
pub use self::step_up::StepUp;

#[cfg(test)]
mod tests;
