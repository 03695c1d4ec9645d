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

pub use self::grants::{scope_grants, ClaimNames, GrantSource, Grants};
pub use self::membership::Membership;
pub use self::preconditions::{check_header, HeaderFormat};
pub use self::requirements::{RequestValue, Requirement, RequirementCheck, Template};

#[cfg(test)]
mod tests;
