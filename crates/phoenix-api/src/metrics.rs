//! Prometheus metrics: the [`Metrics`] counters and histogram the loop (and the webhook
//! handler) update with atomics, and the text rendering for `GET /metrics`, which adds
//! the gauges read from the current [`Snapshot`]. Every metric name starts `phoenix_`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use phoenix_core::drift::DriftKind;

use crate::command::Forge;
use crate::snapshot::{GroupHealth, PlanState, Snapshot, SyncState};

/// Upper bounds (seconds) of the reconcile duration histogram buckets.
pub const RECONCILE_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A lock-free histogram with fixed buckets.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Non-cumulative counts per bucket; the last slot is `+Inf`.
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// A histogram over `bounds` (ascending).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, value: Duration) {
        let secs = value.as_secs_f64();
        let slot = self
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str) {
        let mut cumulative = 0u64;
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = match self.bounds.get(i) {
                Some(b) => format!("{b}"),
                None => "+Inf".to_owned(),
            };
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// How a plan ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanResult {
    /// Succeeded.
    Succeeded,
    /// Failed without rollback.
    Failed,
    /// Failed and rolled back.
    RolledBack,
    /// Cancelled.
    Cancelled,
}

impl PlanResult {
    const ALL: [PlanResult; 4] = [
        PlanResult::Succeeded,
        PlanResult::Failed,
        PlanResult::RolledBack,
        PlanResult::Cancelled,
    ];

    fn as_str(self) -> &'static str {
        match self {
            PlanResult::Succeeded => "succeeded",
            PlanResult::Failed => "failed",
            PlanResult::RolledBack => "rolled_back",
            PlanResult::Cancelled => "cancelled",
        }
    }
}

/// What happened to a webhook delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// Verified and forwarded to the loop.
    Accepted,
    /// Verified, but a delivery id seen before.
    Duplicate,
    /// Verified, but not a push (e.g. `ping`).
    Ignored,
    /// Bad or missing signature.
    Rejected,
}

impl WebhookOutcome {
    const ALL: [WebhookOutcome; 4] = [
        WebhookOutcome::Accepted,
        WebhookOutcome::Duplicate,
        WebhookOutcome::Ignored,
        WebhookOutcome::Rejected,
    ];

    fn as_str(self) -> &'static str {
        match self {
            WebhookOutcome::Accepted => "accepted",
            WebhookOutcome::Duplicate => "duplicate",
            WebhookOutcome::Ignored => "ignored",
            WebhookOutcome::Rejected => "rejected",
        }
    }
}

/// `phoenix_window_blocked_groups`: groups a change window blocks now (design section 14).
fn windows(o: &mut String, snapshot: &Snapshot) {
    header(
        o,
        "phoenix_window_blocked_groups",
        "Instance groups a change window keeps from starting replacements and prunes now.",
        "gauge",
    );
    let _ = writeln!(
        o,
        "phoenix_window_blocked_groups {}",
        snapshot.windows().blocked_groups
    );
}

/// Counters and histograms, shared as `Arc<Metrics>` between the loop and the API.
/// Gauges (groups, drift, inventory age, plans) come from the snapshot at scrape time.
#[derive(Debug)]
pub struct Metrics {
    reconcile_duration: Histogram,
    plans: [AtomicU64; 4],
    git_fetch_ok: AtomicU64,
    git_fetch_error: AtomicU64,
    /// Indexed `[forge][outcome]`.
    webhooks: [[AtomicU64; 4]; 3],
    alert_delivered: AtomicU64,
    alert_failed: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            reconcile_duration: Histogram::new(&RECONCILE_BUCKETS),
            plans: Default::default(),
            git_fetch_ok: AtomicU64::new(0),
            git_fetch_error: AtomicU64::new(0),
            webhooks: Default::default(),
            alert_delivered: AtomicU64::new(0),
            alert_failed: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Records the wall time of one reconcile pass.
    pub fn observe_reconcile(&self, took: Duration) {
        self.reconcile_duration.observe(took);
    }

    /// Counts a finished plan.
    pub fn plan_finished(&self, result: PlanResult) {
        let i = PlanResult::ALL
            .iter()
            .position(|r| *r == result)
            .expect("ALL lists every result");
        self.plans[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a git fetch (or folder read).
    pub fn git_fetch(&self, ok: bool) {
        let c = if ok {
            &self.git_fetch_ok
        } else {
            &self.git_fetch_error
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an alert delivery attempt's final result.
    pub fn alert_delivery(&self, ok: bool) {
        let c = if ok {
            &self.alert_delivered
        } else {
            &self.alert_failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a webhook delivery (the API calls this itself).
    pub fn webhook(&self, forge: Forge, outcome: WebhookOutcome) {
        let f = Forge::ALL
            .iter()
            .position(|x| *x == forge)
            .expect("ALL lists every forge");
        let o = WebhookOutcome::ALL
            .iter()
            .position(|x| *x == outcome)
            .expect("ALL lists every outcome");
        self.webhooks[f][o].fetch_add(1, Ordering::Relaxed);
    }

    /// The webhook counter for one forge and outcome (for tests and the dashboard).
    pub fn webhook_count(&self, forge: Forge, outcome: WebhookOutcome) -> u64 {
        let f = Forge::ALL.iter().position(|x| *x == forge).unwrap_or(0);
        let o = WebhookOutcome::ALL
            .iter()
            .position(|x| *x == outcome)
            .unwrap_or(0);
        self.webhooks[f][o].load(Ordering::Relaxed)
    }

    /// Renders the Prometheus text exposition (version 0.0.4) of the counters plus the
    /// gauges of `snapshot` as of `now`.
    pub fn render(&self, snapshot: &Snapshot, now: SystemTime) -> String {
        let mut out = String::with_capacity(4096);
        let o = &mut out;

        header(
            o,
            "phoenix_reconcile_duration_seconds",
            "Wall time of reconcile passes.",
            "histogram",
        );
        self.reconcile_duration
            .render(o, "phoenix_reconcile_duration_seconds");

        header(
            o,
            "phoenix_ready",
            "1 after the first complete reconcile pass.",
            "gauge",
        );
        let _ = writeln!(o, "phoenix_ready {}", u8::from(snapshot.ready()));

        header(
            o,
            "phoenix_revision_rejected",
            "1 while the newest desired-state revision is rejected.",
            "gauge",
        );
        let _ = writeln!(
            o,
            "phoenix_revision_rejected {}",
            u8::from(snapshot.revision().error.is_some())
        );

        let mut by_sync: BTreeMap<&str, u64> =
            SyncState::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        let mut by_health: BTreeMap<&str, u64> =
            GroupHealth::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        let mut drift: BTreeMap<&str, u64> = [
            DriftKind::Missing,
            DriftKind::Surplus,
            DriftKind::Outdated,
            DriftKind::Modified,
            DriftKind::Unhealthy,
            DriftKind::Orphaned,
            DriftKind::Unmanaged,
            DriftKind::Unregistered,
        ]
        .iter()
        .map(|k| (k.as_str(), 0))
        .collect();
        // The oldest open finding of each kind, for "drift open too long" alerts.
        let mut oldest: BTreeMap<&str, SystemTime> = BTreeMap::new();
        for g in snapshot.groups() {
            *by_sync.entry(g.summary.sync.as_str()).or_default() += 1;
            *by_health.entry(g.summary.health.as_str()).or_default() += 1;
            for f in &g.summary.drift {
                *drift.entry(f.kind.as_str()).or_default() += 1;
                let since = oldest.entry(f.kind.as_str()).or_insert(f.since);
                *since = (*since).min(f.since);
            }
        }
        header(
            o,
            "phoenix_groups",
            "Instance groups by sync state.",
            "gauge",
        );
        for (state, n) in &by_sync {
            let _ = writeln!(o, "phoenix_groups{{sync=\"{state}\"}} {n}");
        }
        header(
            o,
            "phoenix_groups_health",
            "Instance groups by health.",
            "gauge",
        );
        for (state, n) in &by_health {
            let _ = writeln!(o, "phoenix_groups_health{{health=\"{state}\"}} {n}");
        }
        header(
            o,
            "phoenix_drift_open",
            "Open drift findings by kind.",
            "gauge",
        );
        for (kind, n) in &drift {
            let _ = writeln!(o, "phoenix_drift_open{{kind=\"{kind}\"}} {n}");
        }
        header(
            o,
            "phoenix_drift_oldest_open_seconds",
            "Age of the oldest open drift finding, by kind (kinds with open findings only).",
            "gauge",
        );
        for (kind, since) in &oldest {
            let age = now.duration_since(*since).map_or(0, |d| d.as_secs());
            let _ = writeln!(
                o,
                "phoenix_drift_oldest_open_seconds{{kind=\"{kind}\"}} {age}"
            );
        }

        render_traffic(o, snapshot);
        windows(o, snapshot);

        let mut plan_states: BTreeMap<&str, u64> =
            PlanState::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        for p in snapshot.plans() {
            *plan_states.entry(p.state.as_str()).or_default() += 1;
        }
        header(
            o,
            "phoenix_plans",
            "Plans known to the daemon by state.",
            "gauge",
        );
        for (state, n) in &plan_states {
            let _ = writeln!(o, "phoenix_plans{{state=\"{state}\"}} {n}");
        }
        header(
            o,
            "phoenix_plans_finished_total",
            "Plans finished, by result.",
            "counter",
        );
        for (i, r) in PlanResult::ALL.iter().enumerate() {
            let _ = writeln!(
                o,
                "phoenix_plans_finished_total{{result=\"{}\"}} {}",
                r.as_str(),
                self.plans[i].load(Ordering::Relaxed)
            );
        }

        header(
            o,
            "phoenix_git_fetches_total",
            "Desired-state source fetches, by result.",
            "counter",
        );
        let _ = writeln!(
            o,
            "phoenix_git_fetches_total{{result=\"ok\"}} {}",
            self.git_fetch_ok.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            o,
            "phoenix_git_fetches_total{{result=\"error\"}} {}",
            self.git_fetch_error.load(Ordering::Relaxed)
        );

        header(
            o,
            "phoenix_webhooks_total",
            "Push webhook deliveries, by forge and outcome.",
            "counter",
        );
        for (fi, forge) in Forge::ALL.iter().enumerate() {
            for (oi, outcome) in WebhookOutcome::ALL.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "phoenix_webhooks_total{{forge=\"{}\",outcome=\"{}\"}} {}",
                    forge.as_str(),
                    outcome.as_str(),
                    self.webhooks[fi][oi].load(Ordering::Relaxed)
                );
            }
        }

        header(
            o,
            "phoenix_inventory_age_seconds",
            "Seconds since the provider's last inventory pass.",
            "gauge",
        );
        for p in snapshot.inventory() {
            if let Some(age) = p.status_at(now).age_seconds {
                let _ = writeln!(
                    o,
                    "phoenix_inventory_age_seconds{{provider=\"{}\"}} {age}",
                    escape(&p.provider)
                );
            }
        }
        header(
            o,
            "phoenix_inventory_complete",
            "1 if the provider's last inventory pass was complete.",
            "gauge",
        );
        for p in snapshot.inventory() {
            let _ = writeln!(
                o,
                "phoenix_inventory_complete{{provider=\"{}\"}} {}",
                escape(&p.provider),
                u8::from(p.complete)
            );
        }
        header(
            o,
            "phoenix_inventory_instances",
            "Owned instances seen by the provider's last inventory pass.",
            "gauge",
        );
        for p in snapshot.inventory() {
            let _ = writeln!(
                o,
                "phoenix_inventory_instances{{provider=\"{}\"}} {}",
                escape(&p.provider),
                p.instances
            );
        }

        header(
            o,
            "phoenix_alert_deliveries_total",
            "Alert deliveries, by result.",
            "counter",
        );
        let _ = writeln!(
            o,
            "phoenix_alert_deliveries_total{{result=\"delivered\"}} {}",
            self.alert_delivered.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            o,
            "phoenix_alert_deliveries_total{{result=\"failed\"}} {}",
            self.alert_failed.load(Ordering::Relaxed)
        );
        let alerts = snapshot.alerts();
        header(
            o,
            "phoenix_alerts_pending",
            "Alert deliveries waiting in the outbox.",
            "gauge",
        );
        let _ = writeln!(o, "phoenix_alerts_pending {}", alerts.pending);
        header(
            o,
            "phoenix_alerts_failed",
            "Alert deliveries in the outbox that gave up.",
            "gauge",
        );
        let _ = writeln!(o, "phoenix_alerts_failed {}", alerts.failed);
        out
    }
}

/// `phoenix_traffic_in_service{group}`: for each group with `spec.traffic` (it names
/// its target groups), how many instances are `healthy` in every one of them (0 when
/// none is, or the group has no instances).
fn render_traffic(o: &mut String, snapshot: &Snapshot) {
    header(
        o,
        "phoenix_traffic_in_service",
        "Instances in service in every target group of their group, per group with spec.traffic.",
        "gauge",
    );
    for g in snapshot.groups() {
        if g.summary.target_groups.is_none() {
            continue;
        }
        let n = g
            .summary
            .instances
            .iter()
            .filter(|i| i.in_service())
            .count();
        let _ = writeln!(
            o,
            "phoenix_traffic_in_service{{group=\"{}\"}} {n}",
            escape(g.summary.name.as_str())
        );
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value (backslash, double quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.observe_reconcile(Duration::from_millis(3));
        m.observe_reconcile(Duration::from_millis(700));
        m.observe_reconcile(Duration::from_secs(60));
        let text = m.render(&Snapshot::default(), SystemTime::now());
        assert!(text.contains("phoenix_reconcile_duration_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("phoenix_reconcile_duration_seconds_bucket{le=\"1\"} 2\n"));
        assert!(text.contains("phoenix_reconcile_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("phoenix_reconcile_duration_seconds_count 3\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
