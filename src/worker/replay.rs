//! The DPoP replay guard of one worker, a component: the process-wide replay stores of
//! the providers that accept DPoP, and the rate limit of its warning when a store is
//! full. A proof seen before (on any worker), or one a store cannot take, turns the
//! decision into a refusal — never a replay let through.

use super::effects::{Effect, Level};
use super::Cx;
use crate::config::Config;
use crate::pipeline::{Decision, Outcome};
use crate::reply::Denial;
use crate::sender::{Claimed, ReplayStore};
use crate::shared::Store;

/// A worker logs a proof refused for want of replay space at most once per this many ms
/// (each refusal is counted in `dpop_replay_store_full`).
pub const REPLAY_WARN_EVERY_MS: u64 = 10_000;

/// The replay stores and the warning's rate limit.
pub struct ReplayGuard {
    /// Per provider accepting DPoP: its process-wide store.
    stores: Vec<Option<ReplayStore>>,
    /// When (worker clock, ms) this worker last logged a proof refused for want of space.
    warned_ms: Option<u64>,
}

impl ReplayGuard {
    /// The stores of a configuration's DPoP providers.
    pub fn new(config: &Config) -> ReplayGuard {
        let stores = config
            .providers
            .iter()
            .map(|p| {
                let d = p.dpop.as_ref()?;
                Some(ReplayStore::new(
                    &crate::config::segment(&p.name),
                    d.replay_entries,
                ))
            })
            .collect();
        ReplayGuard {
            stores,
            warned_ms: None,
        }
    }

    /// Makes every bucket exist before this worker claims proofs in any.
    pub fn prepare(&self, store: &dyn Store) {
        for s in self.stores.iter().flatten() {
            s.prepare(store);
        }
    }

    /// Enters the decision's proof, if any, in its provider's store at `clock` (ms).
    pub fn claim(&mut self, outcome: &mut Outcome, clock: u64, cx: &mut Cx) {
        let (Some(claim), Some(provider)) = (outcome.proof.take(), outcome.provider) else {
            return;
        };
        let (Some(Some(store)), Some(d)) = (
            self.stores.get(provider),
            cx.config
                .providers
                .get(provider)
                .and_then(|p| p.dpop.as_ref()),
        ) else {
            return;
        };
        let now_s = i64::try_from(clock / 1000).unwrap_or(i64::MAX);
        let claimed = store.claim(cx.store, &claim, now_s);
        cx.metrics.proof(provider, claimed);
        let why = match claimed {
            Claimed::Fresh => return,
            Claimed::Replayed => "DPoP proof replayed",
            Claimed::Full | Claimed::Failed => {
                let quiet = self
                    .warned_ms
                    .is_some_and(|t| clock.saturating_sub(t) < REPLAY_WARN_EVERY_MS);
                if !quiet {
                    self.warned_ms = Some(clock);
                    cx.out.push(Effect::Log(
                        Level::Warn,
                        format!(
                            "bearer-guard: DPoP replay store of provider {} cannot take a proof ({}): refused (counted in dpop_replay_store_full; logged at most every {} s)",
                            cx.config.provider_name(provider),
                            if claimed == Claimed::Full { "bucket full; raise dpop.replay_entries" } else { "shared data refused" },
                            REPLAY_WARN_EVERY_MS / 1000
                        ),
                    ));
                }
                "DPoP replay store full"
            }
        };
        outcome.decision = Decision::Deny(Denial::InvalidDpopProof(d.algs.clone()));
        outcome.identity.clear();
        outcome.note = why.into();
    }
}
