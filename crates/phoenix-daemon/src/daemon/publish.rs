//! Publishing: a fresh immutable [`phoenix_api::Snapshot`] for the API after every
//! pass, built by [`crate::view::build`] from what the loop knows.

use std::sync::Arc;
use std::time::SystemTime;

use phoenix_api::AlertCounts;

use super::Daemon;
use crate::view::{self, ViewInput};

impl Daemon {
    /// Build and publish the snapshot; readers keep the one they hold.
    pub(super) fn publish(&mut self, now: SystemTime) {
        self.histories.refresh(&mut self.store);
        let alerts = match self.store.outbox_counts() {
            Ok(counts) => AlertCounts {
                pending: counts.values().map(|c| c.pending as usize).sum(),
                failed: counts
                    .values()
                    .map(|c| (c.failing + c.expired) as usize)
                    .sum(),
            },
            Err(_) => AlertCounts::default(),
        };
        let revision = self
            .revision
            .as_ref()
            .zip(self.accepted_at)
            .map(|(r, at)| (r.id.as_str(), at));
        let previous = Arc::clone(&self.channels.snapshots.borrow());
        let input = ViewInput {
            ready: self.ready,
            revision,
            rejection: self.rejection.as_deref(),
            signature: self.revision.as_ref().and_then(|r| r.signature.as_ref()),
            source_error: self.source_error.as_deref(),
            inventories: &self.inventories,
            traffic: &self.traffic,
            document: self.document.as_ref(),
            since: &self.since,
            alerts,
            previous: Some(&previous),
            windows: &self.windows,
        };
        let snapshot = view::build(&self.store, &input, &self.histories, now);
        self.channels.snapshots.send_replace(snapshot);
    }
}
