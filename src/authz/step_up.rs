//! A rule's step-up requirement (RFC 9470): the token's sign-in must be of one of the
//! rule's authentication levels (`acr`) and recent enough (`auth_time`).

use crate::reply::StepUp as Challenge;
use crate::token::numeric_date;
use serde_json::{Map, Value};

/// `rules[i].acr_values` and `rules[i].max_age_s`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StepUp {
    /// The token's `acr` must be one of these (empty: any).
    pub acr_values: Vec<String>,
    /// The token's `auth_time` must be at most this many seconds old.
    pub max_age_s: Option<u64>,
}

/// Why a sign-in does not do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weak {
    /// No `acr` claim (or not a string), or one not among the rule's.
    Level,
    /// No `auth_time` claim (or not a number), or one older than `max_age_s`.
    Age,
}

impl std::fmt::Display for Weak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Weak::Level => "acr missing or not one of the rule's acr_values",
            Weak::Age => "auth_time missing or older than the rule's max_age_s",
        })
    }
}

impl StepUp {
    /// `Ok` when the token's sign-in satisfies the rule at `now_s` (an `auth_time` in the
    /// future by at most `skew_s` counts as now).
    pub fn check(&self, claims: &Map<String, Value>, now_s: i64, skew_s: i64) -> Result<(), Weak> {
        if !self.acr_values.is_empty() {
            let acr = claims.get("acr").and_then(Value::as_str);
            if !acr.is_some_and(|a| self.acr_values.iter().any(|v| v == a)) {
                return Err(Weak::Level);
            }
        }
        if let Some(max_age) = self.max_age_s {
            let max_age = i64::try_from(max_age).unwrap_or(i64::MAX);
            let Some(auth_time) = claims.get("auth_time").and_then(numeric_date) else {
                return Err(Weak::Age);
            };
            let fresh = auth_time <= now_s.saturating_add(skew_s)
                && now_s.saturating_sub(auth_time) <= max_age.saturating_add(skew_s);
            if !fresh {
                return Err(Weak::Age);
            }
        }
        Ok(())
    }

    /// The challenge a failed check answers with.
    pub fn challenge(&self, weak: Weak) -> Challenge {
        Challenge {
            acr_values: (!self.acr_values.is_empty()).then(|| self.acr_values.join(" ")),
            max_age: self.max_age_s,
            too_old: weak == Weak::Age,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn level_and_age() {
        let rule = StepUp {
            acr_values: vec!["phr".into(), "phrh".into()],
            max_age_s: Some(300),
        };
        let now = 10_000;
        assert_eq!(
            rule.check(
                &claims(json!({"acr": "phr", "auth_time": now - 300})),
                now,
                0
            ),
            Ok(())
        );
        assert_eq!(
            rule.check(&claims(json!({"acr": "phrh", "auth_time": now})), now, 0),
            Ok(())
        );
        // Every way to miss the level: absent, another value, not a string, a prefix.
        for acr in [
            json!(null),
            json!("pwd"),
            json!(["phr"]),
            json!("ph"),
            json!("PHR"),
        ] {
            let mut c = claims(json!({"auth_time": now}));
            if !acr.is_null() {
                c.insert("acr".into(), acr.clone());
            }
            assert_eq!(rule.check(&c, now, 0), Err(Weak::Level), "{acr}");
        }
        // Every way to miss the age: absent, too old, a string, far in the future.
        for t in [
            json!(null),
            json!(now - 400),
            json!(format!("{now}")),
            json!(now + 61),
        ] {
            let mut c = claims(json!({"acr": "phr"}));
            if !t.is_null() {
                c.insert("auth_time".into(), t.clone());
            }
            assert_eq!(rule.check(&c, now, 60), Err(Weak::Age), "{t}");
        }
        // The clock skew widens the window by its width, no more.
        assert_eq!(
            rule.check(
                &claims(json!({"acr": "phr", "auth_time": now - 360})),
                now,
                60
            ),
            Ok(())
        );
        assert_eq!(
            rule.check(
                &claims(json!({"acr": "phr", "auth_time": now - 361})),
                now,
                60
            ),
            Err(Weak::Age)
        );
    }

    #[test]
    fn the_log_says_which_check_failed() {
        assert_eq!(
            Weak::Level.to_string(),
            "acr missing or not one of the rule's acr_values"
        );
        assert_eq!(
            Weak::Age.to_string(),
            "auth_time missing or older than the rule's max_age_s"
        );
    }

    #[test]
    fn challenges_name_what_the_rule_asks() {
        let rule = StepUp {
            acr_values: vec!["phr".into(), "phrh".into()],
            max_age_s: Some(300),
        };
        let c = rule.challenge(Weak::Age);
        assert_eq!(
            (c.acr_values.as_deref(), c.max_age, c.too_old),
            (Some("phr phrh"), Some(300), true)
        );
        let only_age = StepUp {
            acr_values: Vec::new(),
            max_age_s: Some(60),
        };
        assert_eq!(only_age.challenge(Weak::Age).acr_values, None);
    }
}
