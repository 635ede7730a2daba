//! The `policy_violation` alert (design section 12): once per (group, image). The
//! delivery id is derived from the group and the image, so the outbox refuses a second
//! copy: a group that keeps naming a refused image alerts once, and naming another
//! refused image alerts again.

use std::time::SystemTime;

use phoenix_core::config::AlertEvent;
use phoenix_core::drift::DriftKind;
use phoenix_core::plan::PlanDocument;
use phoenix_store::Store;

use super::AlertError;
use super::incidents::Alerts;
use super::render::AlertNotice;

impl Alerts {
    /// Enqueue `policy_violation` for every group of `document` whose image breaks
    /// `policy.images`, unless it was already sent for that (group, image). Returns
    /// how many alerts were written.
    pub fn policy_violations(
        &mut self,
        store: &mut Store,
        document: &PlanDocument,
        commit: &str,
        now: SystemTime,
    ) -> Result<usize, AlertError> {
        let mut written = 0;
        for group in &document.groups {
            for finding in group
                .drift
                .iter()
                .filter(|f| f.kind == DriftKind::PolicyViolation)
            {
                let image = finding.expected.as_deref().unwrap_or_default();
                let notice = AlertNotice {
                    event: AlertEvent::PolicyViolation,
                    group: Some(group.name.clone()),
                    incidents: Vec::new(),
                    desired_hash: group.desired_hash,
                    observed_hashes: group
                        .observed_hashes
                        .iter()
                        .filter_map(|h| h.hash.as_str().parse().ok())
                        .collect(),
                    commit: Some(commit.to_string()),
                    message: finding.reason.clone(),
                    at: now,
                };
                let id = format!("policy_violation:{}:{image}", group.name);
                written += self.enqueue(store, &notice, &id, None, now)?;
            }
        }
        Ok(written)
    }
}
