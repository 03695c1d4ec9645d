//! The one rule for a decision made of parts — the root fields of a GraphQL request (every
//! element of a batch included), or a rule's header precondition beside its token checks:
//! the whole allows only if **every** part allows; otherwise it waits if any part waits
//! (for data or for the body), else the first enforced denial answers, else the first
//! audited one. Parts are judged by [`Decision::class`](super::Decision::class), an
//! exhaustive match, so no kind of decision can fall between "allows" and "refuses".

use super::{Class, Outcome};
use crate::config::Mode;

/// The part that answers for the whole, as an index into `parts` (`None`: no part). When
/// every part allows, the first one carrying an identity answers (its headers go
/// upstream), else the first.
pub(super) fn answering(parts: &[&Outcome]) -> Option<usize> {
    let first = |want: &dyn Fn(&Outcome) -> bool| parts.iter().position(|o| want(o));
    let class = |o: &Outcome| o.decision.class();
    if parts.iter().all(|o| class(o) == Class::Allow) {
        return first(&|o| !o.identity.is_empty()).or(first(&|_| true));
    }
    first(&|o| class(o) == Class::Pending)
        .or_else(|| first(&|o| class(o) == Class::Deny && o.mode == Mode::Enforce))
        .or_else(|| first(&|o| class(o) == Class::Deny))
}

#[cfg(test)]
mod tests {
    use super::super::{outcome, Decision, Wait};
    use super::*;
    use crate::reply::Denial;

    /// Every decision a part can reach: allowed (with and without identity, public),
    /// each denial enforced and audited, each kind of wait, and the body phase.
    fn every_part() -> Vec<Outcome> {
        let mut parts = Vec::new();
        let allow = || Decision::Allow {
            headers: Vec::new(),
        };
        parts.push(outcome(allow(), None, "allowed"));
        let mut with_identity = outcome(allow(), None, "allowed with identity");
        with_identity.identity = vec![("x-auth-subject".into(), "u".into())];
        parts.push(with_identity);
        let mut public = outcome(allow(), None, "public");
        public.public = true;
        parts.push(public);
        for d in Denial::all() {
            for mode in [Mode::Enforce, Mode::Audit] {
                let mut o = outcome(Decision::Deny(d.clone()), None, "denied");
                o.mode = mode;
                parts.push(o);
            }
        }
        let waits = [
            Wait::Keys {
                provider: 0,
                refetch: false,
            },
            Wait::Keys {
                provider: 1,
                refetch: true,
            },
            Wait::Revocation { provider: 1 },
            Wait::Account {
                provider: 0,
                key: "k".into(),
                path: "/p".into(),
            },
        ];
        for w in waits {
            // A wait must dominate whatever mode its rule is in.
            for mode in [Mode::Enforce, Mode::Audit] {
                let mut o = outcome(Decision::Await(w.clone()), None, "waits");
                o.mode = mode;
                parts.push(o);
            }
        }
        parts.push(outcome(
            Decision::ReadBody {
                headers: Vec::new(),
                hold_head: false,
            },
            None,
            "body",
        ));
        parts
    }

    /// Checks the rule for one combination; the message names it.
    fn check(parts: &[&Outcome]) {
        let case = || {
            let d: Vec<String> = parts
                .iter()
                .map(|o| format!("{:?}/{:?}", o.decision, o.mode))
                .collect();
            d.join(" + ")
        };
        let Some(i) = answering(parts) else {
            panic!("no part answers: {}", case());
        };
        let chosen = parts[i];
        let classes: Vec<Class> = parts.iter().map(|o| o.decision.class()).collect();
        let all_allow = classes.iter().all(|c| *c == Class::Allow);
        assert_eq!(
            chosen.decision.class() == Class::Allow,
            all_allow,
            "allowed exactly when every part allows: {}",
            case()
        );
        if all_allow {
            let identity = parts.iter().position(|o| !o.identity.is_empty());
            assert_eq!(Some(i), identity.or(Some(0)), "identity kept: {}", case());
            return;
        }
        if let Some(w) = classes.iter().position(|c| *c == Class::Pending) {
            assert_eq!(i, w, "the first wait is never dropped: {}", case());
            return;
        }
        let enforced = parts
            .iter()
            .position(|o| o.decision.class() == Class::Deny && o.mode == Mode::Enforce);
        let denied = classes.iter().position(|c| *c == Class::Deny);
        assert_eq!(Some(i), enforced.or(denied), "first denial: {}", case());
    }

    #[test]
    fn a_combined_decision_allows_exactly_when_every_part_allows() {
        let all = every_part();
        // Classes by the decisions' shapes: only `Allow` allows, only `Deny` denies.
        for o in &all {
            let want = match o.decision {
                Decision::Allow { .. } => Class::Allow,
                Decision::Deny(_) => Class::Deny,
                _ => Class::Pending,
            };
            assert_eq!(o.decision.class(), want, "{:?}", o.decision);
        }
        let mut combinations = 0;
        for a in &all {
            check(&[a]);
            for b in &all {
                check(&[a, b]);
                for c in &all {
                    check(&[a, b, c]);
                    combinations += 1;
                }
            }
        }
        assert_eq!(combinations, all.len().pow(3));
        assert_eq!(answering(&[]), None);
    }
}
