//! One reconcile pass, the same path for the first start and every later one: start a
//! source poll when due, collect every provider's inventory, plan with the pure
//! planner, open and resolve drift incidents, hand the plan to the executor (enforce
//! mode), then publish a snapshot.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use phoenix_api::ApiEvent;
use phoenix_core::config::Mode;
use phoenix_core::plan::{FailedGeneration, PlanDocument, PlanInput, PlanMemory, plan_checked};
use phoenix_core::spec::ParsedGroup;
use tokio::time::Instant;
use tracing::Instrument;

use super::event::Reason;
use super::source::{PollRequest, SourceSlot};
use super::transitions::DocumentPass;
use super::{Daemon, jitter};
use crate::error_chain;
use crate::view::{self, FindingKey};

impl Daemon {
    /// One reconcile pass, on its own span. Returns how long to wait before the next one.
    pub(super) async fn pass(&mut self, reason: Reason) -> Duration {
        let span = tracing::info_span!("reconcile", reason = ?reason);
        self.pass_phases(reason).instrument(span).await
    }

    async fn pass_phases(&mut self, reason: Reason) -> Duration {
        let started = std::time::Instant::now();
        let mut phases = Phases::new();
        if Instant::now() >= self.next_source_poll && !matches!(self.source, SourceSlot::Polling(_))
        {
            self.start_poll(PollRequest {
                after: None,
                reason,
            });
        }
        self.check_stuck_poll();
        phases.end("source");
        self.collect_inventories().await;
        phases.end("inventory");
        if self.stop.is_cancelled() {
            // Shutting down: an inventory abandoned halfway must not be planned on.
            return Duration::ZERO;
        }
        let now = SystemTime::now();
        self.images = crate::policy::image_verdicts(
            self.config.policy.images.as_deref(),
            self.revision.as_deref(),
            &self.providers,
            now,
        )
        .await;
        self.traffic = match self.revision.as_deref() {
            Some(revision) => {
                let groups = revision.groups.values().map(|d| d.group.as_ref());
                crate::traffic::target_health(groups, &self.providers).await
            }
            None => phoenix_core::traffic::TrafficView::new(),
        };
        phases.end("traffic");
        let groups = self.plan(now);
        phases.end("plan");
        self.drift_alerts(now);
        self.policy_alerts(now);
        phases.end("drift_alerts");
        if self.config.reconcile.mode == Mode::Enforce {
            self.execute(&groups, now).await;
        }
        // Publishing is the pass's memory peak (a new snapshot beside everything else):
        // the planner's list of groups (4 MB at 100k groups) is not needed there.
        drop(groups);
        phases.end("execute");
        if let Err(err) = self.alerts.renotify(&mut self.store, SystemTime::now()) {
            tracing::error!(error = %error_chain(&err), "cannot re-notify open incidents");
        }
        self.publish(SystemTime::now());
        phases.end("publish");
        let retention = self.config.state.retention;
        self.retention
            .due(&mut self.store, &retention, SystemTime::now());
        self.channels.metrics.observe_reconcile(started.elapsed());
        tracing::debug!(phases = %phases, "pass finished");
        let interval = jitter(self.config.reconcile.interval);
        match self.executor_wake {
            Some(wake) => interval.min(wake.min(self.options.busy_interval)),
            None => interval,
        }
    }

    /// After a complete pass: open and resolve drift incidents and enqueue their alerts.
    /// An incomplete inventory proves nothing, so it neither opens nor resolves. The
    /// alerts read the plan document in place ([`DocumentPass`]): nothing is copied for
    /// the groups without drift.
    fn drift_alerts(&mut self, now: SystemTime) {
        let complete =
            !self.inventories.is_empty() && self.inventories.iter().all(|inv| inv.complete);
        let (Some(document), Some(revision), true) =
            (self.document.as_ref(), self.revision.as_ref(), complete)
        else {
            return;
        };
        let pass = DocumentPass {
            commit: revision.id.as_str(),
            document,
        };
        if let Err(err) = self.alerts.observe_drift(&mut self.store, &pass, now) {
            tracing::error!(error = %error_chain(&err), "cannot record drift incidents");
        }
    }

    /// `policy_violation` alerts, once per (group, image) (crate::alerts::policy).
    fn policy_alerts(&mut self, now: SystemTime) {
        let (Some(document), Some(revision)) = (self.document.as_ref(), self.revision.as_ref())
        else {
            return;
        };
        if let Err(err) =
            self.alerts
                .policy_violations(&mut self.store, document, revision.id.as_str(), now)
        {
            tracing::error!(error = %error_chain(&err), "cannot record policy_violation alerts");
        }
    }

    /// Enforce mode: hand the plan to the executor and drive running plans as far as
    /// they can go without waiting.
    async fn execute(&mut self, groups: &[ParsedGroup], now: SystemTime) {
        let (Some(document), Some(revision)) = (self.document.as_ref(), self.revision.as_ref())
        else {
            return;
        };
        let commit = revision.id.to_string();
        self.executor
            .set_image_policy(self.config.policy.images.as_deref().cloned());
        match self
            .executor
            .submit(&mut self.store, document, groups, &commit, now)
        {
            Ok(transitions) => self.transitions(&transitions, now),
            Err(err) => tracing::error!(error = %error_chain(&err), "cannot submit plans"),
        }
        self.executor.set_windows(self.windows.gate());
        match self.executor.advance(&mut self.store, now).await {
            Ok(progress) => {
                self.transitions(&progress.transitions, SystemTime::now());
                self.executor_wake = progress.wake_after;
            }
            Err(err) => {
                tracing::error!(error = %error_chain(&err), "executor failed; retrying next pass");
                self.executor_wake = Some(self.options.busy_interval);
            }
        }
    }

    /// Every provider's inventory, concurrently. An incomplete one replaces the last only
    /// as "incomplete": the planner then acts on nothing missing or orphaned there.
    async fn collect_inventories(&mut self) {
        // The last ones are replaced whole; dropping them first keeps one copy of the
        // fleet in memory instead of two while the providers answer.
        self.inventories.clear();
        let owner = self.config.owner.clone();
        let passes = self.providers.values().map(|provider| {
            let provider = provider.clone();
            let owner = owner.clone();
            async move { provider.inventory(&owner).await }
        });
        let stop = self.stop.clone();
        let all = tokio::select! {
            all = futures::future::join_all(passes) => all,
            () = stop.cancelled() => {
                tracing::info!("inventory abandoned: shutting down");
                return;
            }
        };
        for inventory in all {
            if !inventory.complete {
                tracing::warn!(provider = %inventory.provider, error = ?inventory.error, "inventory incomplete");
            }
            self.inventories.push(inventory);
        }
        self.inventories
            .sort_unstable_by(|a, b| a.provider.cmp(&b.provider));
    }

    /// Run the pure planner over what is known now; returns the desired groups.
    fn plan(&mut self, now: SystemTime) -> Vec<ParsedGroup> {
        let Some(revision) = self.revision.clone() else {
            return Vec::new();
        };
        let groups: Vec<ParsedGroup> = revision
            .groups
            .values()
            .map(|desired| ParsedGroup {
                group: Arc::clone(&desired.group),
                hash: desired.hash,
            })
            .collect();
        let mut memory: PlanMemory = match self.store.load_planner_memory() {
            Ok(memory) => memory.unwrap_or_default(),
            Err(err) => {
                // Planning from an empty memory would drop a mass-removal hold in force
                // (it sticks in the memory): this pass plans nothing instead.
                tracing::error!(error = %error_chain(&err), "cannot load the planner memory; skipping this pass");
                return groups;
            }
        };
        // The store's override record is the truth (crate::windows), not the memory.
        memory.window_override = self.windows.memory_override(now);
        let failed: Vec<FailedGeneration> = match self.store.failed_hashes() {
            Ok(failed) => failed
                .into_iter()
                .map(|f| FailedGeneration {
                    group: f.group.to_string(),
                    hash: f.spec_hash,
                    commit: f.commit,
                })
                .collect(),
            Err(err) => {
                // Planning as if none had failed would launch a failed generation again
                // (issue 17): this pass plans nothing and keeps the last document.
                tracing::error!(error = %error_chain(&err), "cannot load failed generations; skipping this pass");
                return groups;
            }
        };
        let input = PlanInput {
            revision: revision.id.as_str(),
            owner: &self.config.owner,
            groups: &groups,
            inventories: &self.inventories,
            config: &self.config.reconcile,
            memory: &memory,
            failed: &failed,
            images: &self.images,
            traffic: &self.traffic,
            now,
        };
        // A refused input keeps the last document (and the status it shows); an accepted
        // one cannot fail, so the last document is released first rather than held
        // beside the new one (at 100k groups each is ~30 MB).
        let checked = match phoenix_core::plan::check(&input) {
            Ok(checked) => checked,
            Err(err) => {
                tracing::error!(error = %error_chain(&err), "planning failed");
                return groups;
            }
        };
        self.document = None;
        let outcome = plan_checked(checked);
        if let Err(err) = self.store.save_planner_memory(&outcome.memory, now) {
            tracing::error!(error = %error_chain(&err), "cannot save the planner memory");
        }
        self.track_findings(&outcome.document, now);
        if self.inventories.iter().all(|inv| inv.complete) && !self.inventories.is_empty() {
            self.ready = true;
        }
        if self.config.reconcile.mode == Mode::Observe {
            tracing::debug!(
                changes = outcome.document.changes,
                "observe mode: not acting"
            );
        }
        self.document = Some(outcome.document);
        groups
    }

    /// Remember since when each finding is open, and stream opened/resolved events.
    fn track_findings(&mut self, document: &PlanDocument, now: SystemTime) {
        let mut current: HashMap<FindingKey, SystemTime> = HashMap::new();
        for group in &document.groups {
            for finding in &group.drift {
                let key = view::finding_key(group.name.as_str(), finding);
                let since = match self.since.get(&key) {
                    Some(since) => *since,
                    None => {
                        let _ = self.channels.events.send(ApiEvent::DriftOpened {
                            group: group.name.to_string(),
                            kind: finding.kind,
                            instance_id: finding.instance_id.clone(),
                            at: now,
                        });
                        now
                    }
                };
                current.insert(key, since);
            }
        }
        for (group, kind, instance_id, _) in self.since.keys().filter(|k| !current.contains_key(*k))
        {
            let _ = self.channels.events.send(ApiEvent::DriftResolved {
                group: group.clone(),
                kind: *kind,
                instance_id: instance_id.clone(),
                at: now,
            });
        }
        self.since = current;
    }
}

/// Wall time of each phase of a pass, for the `pass finished` debug line.
struct Phases {
    last: std::time::Instant,
    done: Vec<(&'static str, Duration)>,
}

impl Phases {
    fn new() -> Self {
        Phases {
            last: std::time::Instant::now(),
            done: Vec::new(),
        }
    }

    fn end(&mut self, phase: &'static str) {
        let now = std::time::Instant::now();
        self.done.push((phase, now - self.last));
        self.last = now;
    }
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (phase, took)) in self.done.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{phase}={:.1}ms", took.as_secs_f64() * 1000.0)?;
        }
        Ok(())
    }
}
