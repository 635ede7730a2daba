//! The `window_override` alert (design sections 14 and 17): once per override an
//! operator makes. The delivery id names the override's store id, so the outbox refuses
//! a second copy of the same override's alert. Alertmanager receivers get none (it
//! tracks problems, and an override is an operator's act, not an incident).

use std::time::SystemTime;

use phoenix_core::config::AlertEvent;
use phoenix_store::{Store, WindowOverrideRecord};

use super::AlertError;
use super::incidents::Alerts;
use super::render::AlertNotice;

impl Alerts {
    /// Enqueue `window_override` for `record` to every receiver that wants it. Returns
    /// how many alerts were written.
    pub fn window_override(
        &mut self,
        store: &mut Store,
        record: &WindowOverrideRecord,
        commit: Option<&str>,
        now: SystemTime,
    ) -> Result<usize, AlertError> {
        let notice = AlertNotice {
            event: AlertEvent::WindowOverride,
            group: None,
            incidents: Vec::new(),
            desired_hash: None,
            observed_hashes: Vec::new(),
            commit: commit.map(str::to_owned),
            message: format!(
                "every change window is lifted until {} by {}: {}",
                phoenix_core::time::rfc3339(record.until),
                record.requested_by,
                record.reason
            ),
            at: record.created_at,
        };
        let id = format!("window_override:{}", record.id);
        self.enqueue(store, &notice, &id, None, now)
    }
}
