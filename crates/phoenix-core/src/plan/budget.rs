//! The per-cycle termination budget: [`budget_limit`] sizes it, and [`Ledger`] grants it,
//! the one place where terminations are counted against it (rollouts first, by urgency,
//! then orphan prunes).

use super::{Budget, GroupReport};
use crate::config::ReconcileConfig;

/// The per-cycle termination budget: the smaller of the absolute cap and the fraction
/// of the fleet, the fraction rounded up so that a small fleet can still make progress
/// (a fraction of 0 disables terminations). A non-finite fraction counts as 0.
pub fn budget_limit(config: &ReconcileConfig, fleet: u32) -> u32 {
    let fraction = if config.max_replacement_fraction.is_finite() {
        config.max_replacement_fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    // fleet ≤ u32::MAX and fraction ≤ 1, so the product fits; `as` saturates anyway.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let by_fraction = (fraction * f64::from(fleet)).ceil() as u32;
    config.max_replacements.min(by_fraction)
}

/// What is left of the budget during one pass, and what was granted and deferred.
#[derive(Debug)]
pub(super) struct Ledger {
    limit: u32,
    remaining: u32,
    used: u32,
    deferred: u32,
}

impl Ledger {
    /// A fresh budget of `limit` terminations.
    pub(super) fn new(limit: u32) -> Self {
        Self {
            limit,
            remaining: limit,
            used: 0,
            deferred: 0,
        }
    }

    /// Grant up to `wanted` terminations to `report`'s group: records what is deferred
    /// on the report (its `deferred` count and a note) and returns how many were granted.
    pub(super) fn grant(&mut self, wanted: usize, report: &mut GroupReport) -> usize {
        let wanted = u32::try_from(wanted).unwrap_or(u32::MAX);
        let granted = wanted.min(self.remaining);
        self.remaining -= granted;
        self.used += granted;
        let deferred = wanted - granted;
        self.deferred += deferred;
        report.deferred = deferred;
        if deferred > 0 {
            report.notes.push(format!(
                "{deferred} of {wanted} terminations deferred: the per-cycle budget of {} is spent",
                self.limit
            ));
        }
        granted as usize
    }

    /// The document's budget section.
    pub(super) fn summary(&self, fleet: u32) -> Budget {
        Budget {
            limit: self.limit,
            used: self.used,
            deferred: self.deferred,
            fleet,
        }
    }
}
