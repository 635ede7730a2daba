//! Bounded state (design section 16, issue 17): finished plans, old revisions,
//! delivered alerts and resolved incidents are pruned after `state.retention`, so the
//! database stops growing under continuous commits. The daemon calls [`Retention::due`]
//! after every pass; the pruning itself runs at most once per [`period`]: hourly, or a
//! quarter of the shortest retention when that is shorter (so a 2-minute retention is
//! kept to about 2 minutes, not 62).

use std::time::{Duration, SystemTime};

use phoenix_core::config::RetentionConfig;
use phoenix_store::{Store, StoreError};

/// How often the pruning runs at most (each run is a few indexed DELETEs).
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How often it may run at least apart, whatever the retention.
const PRUNE_FLOOR: Duration = Duration::from_secs(10);

/// How long apart two prunings are: [`PRUNE_EVERY`], or a quarter of the shortest
/// retention when that is less (never under 10 s).
pub fn period(config: &RetentionConfig) -> Duration {
    let shortest = config
        .plans
        .min(config.revisions)
        .min(config.alerts)
        .min(config.incidents);
    PRUNE_EVERY.min(shortest / 4).max(PRUNE_FLOOR)
}

/// What one run deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Finished plans (with their steps).
    pub plans: usize,
    /// Revisions.
    pub revisions: usize,
    /// Delivered or expired alerts.
    pub alerts: usize,
    /// Resolved incidents.
    pub incidents: usize,
}

/// When the pruning last ran.
#[derive(Debug, Default)]
pub struct Retention {
    last: Option<SystemTime>,
}

impl Retention {
    /// Prune if the last run is [`period`] old (or there was none); `None` when it
    /// was not due. A store error is logged with its chain and retried at the next due
    /// time; it never stops the daemon.
    pub fn due(
        &mut self,
        store: &mut Store,
        config: &RetentionConfig,
        now: SystemTime,
    ) -> Option<Pruned> {
        if let Some(last) = self.last
            && now.duration_since(last).unwrap_or_default() < period(config)
        {
            return None;
        }
        self.last = Some(now);
        match prune(store, config, now) {
            Ok(pruned) => {
                tracing::info!(?pruned, "pruned old state");
                Some(pruned)
            }
            Err(err) => {
                tracing::error!(error = %phoenix_core::chain(&err), "cannot prune old state");
                None
            }
        }
    }
}

/// Delete everything older than its retention at `now`.
pub fn prune(
    store: &mut Store,
    config: &RetentionConfig,
    now: SystemTime,
) -> Result<Pruned, StoreError> {
    let before = |keep: Duration| now.checked_sub(keep).unwrap_or(SystemTime::UNIX_EPOCH);
    Ok(Pruned {
        plans: store.prune_finished_plans(before(config.plans))?,
        revisions: store.prune_revisions(before(config.revisions))?,
        alerts: store.prune_outbox(before(config.alerts))?,
        incidents: store.prune_resolved_incidents(before(config.incidents))?,
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use phoenix_core::GroupName;
    use phoenix_store::{NewPlan, PlanId, PlanStatus, StoreOptions};

    use super::*;

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    /// Issue 17, defect 6: the daemon's retention prunes finished plans older than
    /// `state.retention.plans`, at most once per `period`, and keeps their ids used.
    #[test]
    fn retention_prunes_old_finished_plans_once_per_period() {
        let mut store = Store::open_in_memory(StoreOptions::default()).expect("open");
        let id = PlanId::new("old");
        store
            .insert_plan(
                &NewPlan {
                    id: id.clone(),
                    group: GroupName::new("web").expect("valid"),
                    kind: phoenix_store::PlanKind::Prune,
                    commit: "c".into(),
                    status: PlanStatus::Running,
                    doc: serde_json::json!({}),
                    steps: Vec::new(),
                },
                t(0),
            )
            .expect("insert");
        store
            .set_plan_status(&id, PlanStatus::Succeeded, t(1))
            .expect("finish");
        let config = RetentionConfig::default();
        let mut retention = Retention::default();
        let day = 86_400;
        let early = retention
            .due(&mut store, &config, t(29 * day))
            .expect("first run is due");
        assert_eq!(early.plans, 0, "younger than 30 days: kept");
        assert_eq!(
            retention.due(&mut store, &config, t(31 * day)),
            Some(Pruned {
                plans: 1,
                ..Pruned::default()
            })
        );
        assert!(
            retention
                .due(&mut store, &config, t(31 * day + 60))
                .is_none(),
            "not due again yet"
        );
        assert_eq!(store.plan(&id).expect("read"), None);
        assert!(store.plan_id_used(&id).expect("read"));
    }

    /// Short retentions are pruned often enough to be kept: a quarter of the shortest.
    #[test]
    fn the_period_follows_the_shortest_retention() {
        let mut config = RetentionConfig::default();
        assert_eq!(period(&config), PRUNE_EVERY);
        config.alerts = Duration::from_secs(120);
        assert_eq!(period(&config), Duration::from_secs(30));
        config.incidents = Duration::from_secs(8);
        assert_eq!(period(&config), PRUNE_FLOOR);
    }
}
