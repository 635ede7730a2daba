//! The incident logic the reconcile loop drives: [`Alerts`] turns drift passes, plan
//! transitions and source health into incidents in the store, and each incident's
//! opening, resolution and reminders into outbox entries, one per interested receiver.
//!
//! Rules (docs/alerts.md has the long form):
//! - one incident per (group, drift kind); per-instance findings of a kind collapse into
//!   it. Incidents that open in the same pass for the same group are announced in one
//!   `drift_detected` (primary incident = first kind in `DriftKind` order, the message
//!   lists every kind); incidents that resolve together, in one `drift_resolved`.
//! - a resolve is announced only if the opening was (so receivers never see a resolve
//!   without its detection).
//! - flapping: an incident that re-opens within `flap_window` of the previous resolve of
//!   the same (group, kind) is held; it is announced only if still open when the window
//!   has passed, and a held incident that resolves is never announced.
//! - reminders: each receiver gets the opening event again every `renotify` while the
//!   incident stays open, with a fresh delivery id.
//! - crash safety: every open is committed before its alerts are enqueued, and an
//!   incident never marked notified is announced by the next `renotify` or
//!   `observe_drift`; resolve alerts are enqueued before the incident is resolved.
//!   Delivery ids of first announcements are deterministic, so a repeat is a no-op.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use phoenix_core::config::{AlertConfig, AlertEvent, AlertType};
use phoenix_core::drift::{DriftKind, Finding, GroupDrift};
use phoenix_core::{GroupName, SpecHash};
use phoenix_store::{
    DeliveryId, IncidentId, IncidentOpening, IncidentRecord, NewAlert, NewIncident, PlanId, Store,
};
use tokio::sync::Notify;

use super::receiver::{Receiver, Receivers};
use super::render::{
    AlertNotice, AlertmanagerStyle, IncidentRef, alertmanager_body, slack_body, webhook_body,
};
use super::{AlertError, KIND_PLAN_FAILED, KIND_ROLLBACK, KIND_SOURCE_ERROR, is_drift_kind};

/// Settings of the incident logic that are not per receiver.
#[derive(Debug, Clone)]
pub struct AlertOptions {
    /// The daemon's `owner` (shown in Slack messages, an Alertmanager label).
    pub owner: String,
    /// An incident that re-opens less than this after the previous one of the same group
    /// and kind resolved is held back for this long (flapping). Default 5 minutes.
    pub flap_window: Duration,
    /// Base URL of this daemon's HTTP API as receivers can reach it (Alertmanager
    /// `generatorURL`). Default none.
    pub external_url: Option<String>,
}

impl Default for AlertOptions {
    fn default() -> Self {
        Self {
            owner: "phoenix".to_string(),
            flap_window: Duration::from_secs(5 * 60),
            external_url: None,
        }
    }
}

/// A complete reconcile pass as [`Alerts::observe_drift`] reads it: each group's name
/// and findings by position, in pass order, and a group's hashes asked for only for the
/// groups an incident opens or resolves in. It must cover every group: a group that is
/// absent has no drift.
///
/// [`DriftPass`] is one, owning its observations. The reconcile loop lends its plan
/// document through another, so a pass over 100,000 groups with no drift copies nothing
/// per group.
pub trait DriftObservations {
    /// The accepted revision the desired state came from.
    fn commit(&self) -> &str;
    /// How many groups the pass has (positions `0..groups()`).
    fn groups(&self) -> usize;
    /// The name and findings of the group at `index`.
    fn group(&self, index: usize) -> (&GroupName, &[Finding]);
    /// The desired hash of the group at `index` (`None` for a group no longer in Git).
    fn desired_hash(&self, index: usize) -> Option<SpecHash>;
    /// The distinct spec hashes observed on the instances of the group at `index`.
    fn observed_hashes(&self, index: usize) -> Vec<SpecHash>;
}

/// What one complete reconcile pass observed, for [`Alerts::observe_drift`]. It must
/// cover every group: a group that is absent has no drift.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftPass {
    /// The accepted revision the desired state came from.
    pub commit: String,
    /// Every desired group, plus the groups only orphaned instances still name.
    pub groups: Vec<GroupObservation>,
}

/// One group in a [`DriftPass`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupObservation {
    /// The group.
    pub name: GroupName,
    /// Its desired hash (`None` for a group that is no longer in Git).
    pub desired_hash: Option<SpecHash>,
    /// The distinct spec hashes observed on its instances.
    pub observed_hashes: Vec<SpecHash>,
    /// Its drift findings (`unmanaged` ones are ignored: report only).
    pub findings: Vec<Finding>,
}

impl DriftObservations for DriftPass {
    fn commit(&self) -> &str {
        &self.commit
    }

    fn groups(&self) -> usize {
        self.groups.len()
    }

    fn group(&self, index: usize) -> (&GroupName, &[Finding]) {
        let group = &self.groups[index];
        (&group.name, &group.findings)
    }

    fn desired_hash(&self, index: usize) -> Option<SpecHash> {
        self.groups[index].desired_hash
    }

    fn observed_hashes(&self, index: usize) -> Vec<SpecHash> {
        self.groups[index].observed_hashes.clone()
    }
}

impl GroupObservation {
    /// From what `phoenix_core::drift::classify_group` found for a desired group: its
    /// findings and the distinct observed hashes (tags that are not valid spec hashes,
    /// such as `(none)`, are left out of `observed_hashes`; the findings still say so).
    pub fn from_drift(name: GroupName, desired_hash: SpecHash, drift: &GroupDrift<'_>) -> Self {
        Self {
            name,
            desired_hash: Some(desired_hash),
            observed_hashes: drift
                .observed_hashes
                .iter()
                .filter_map(|h| h.hash.parse().ok())
                .collect(),
            findings: drift.findings.clone(),
        }
    }
}

/// A plan transition, for [`Alerts::plan_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanAlertKind {
    /// `plan_started`: informational.
    Started,
    /// `plan_succeeded`: resolves the group's open `plan_failed` and `rollback` incidents.
    Succeeded,
    /// `plan_failed`: opens (or refreshes) the group's `plan_failed` incident.
    Failed,
    /// `rollback`: opens (or refreshes) the group's `rollback` incident.
    RolledBack,
}

/// A plan transition and what it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanAlert {
    /// What happened.
    pub kind: PlanAlertKind,
    /// The plan (unique forever; it keys the delivery ids).
    pub plan_id: PlanId,
    /// The group.
    pub group: GroupName,
    /// The hash the plan converges to; `None` for a prune plan.
    pub target_hash: Option<SpecHash>,
    /// The hashes running when it happened.
    pub observed_hashes: Vec<SpecHash>,
    /// The commit the target came from.
    pub commit: String,
    /// A human summary (why it failed, what was rolled back).
    pub message: String,
}

/// A source problem, for [`Alerts::source_state`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceAlert {
    /// The rejected revision, if the problem is a rejection.
    pub revision: Option<String>,
    /// A human summary, e.g. `groups/web.yaml:7:3: unknown field` or
    /// `cannot reach https://git.example.com/infra.git`. No secrets.
    pub message: String,
}

type Scope = (Option<GroupName>, String);

/// The hashes of one group of a pass, for the incidents and notices about it.
struct Observed {
    desired_hash: Option<SpecHash>,
    observed_hashes: Vec<SpecHash>,
}

/// The incident logic. Holds no store: every call takes the loop's `&mut Store`.
///
/// In-memory state (flap memory, held incidents, per-receiver reminder times) is a
/// cache: after a restart the worst case is one extra or one late notification.
#[derive(Debug)]
pub struct Alerts {
    receivers: Receivers,
    options: AlertOptions,
    wake: Arc<Notify>,
    /// Last resolve per (group, kind), for flap suppression.
    recently_resolved: HashMap<Scope, SystemTime>,
    /// Open incidents held back by flap suppression, and until when.
    held: HashMap<IncidentId, SystemTime>,
    /// Last notification per (incident, receiver), for per-receiver reminders.
    sent: HashMap<(IncidentId, String), SystemTime>,
}

impl Alerts {
    /// Build the incident logic for `configs`; `secrets` maps receiver names to the
    /// secrets the binary read from their `secret_env`.
    pub fn new(
        configs: &[AlertConfig],
        secrets: &BTreeMap<String, Vec<u8>>,
        options: AlertOptions,
    ) -> Result<Self, AlertError> {
        Ok(Self {
            receivers: Receivers::new(configs, secrets)?,
            options,
            wake: Arc::new(Notify::new()),
            recently_resolved: HashMap::new(),
            held: HashMap::new(),
            sent: HashMap::new(),
        })
    }

    /// The receivers, to hand to [`super::Delivery::new`].
    pub fn receivers(&self) -> Receivers {
        self.receivers.clone()
    }

    /// Notified whenever alerts are enqueued: pass it to [`super::Delivery::run`] so new
    /// alerts go out at once.
    pub fn delivery_wake(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// After each complete reconcile pass: open incidents for new divergence, resolve
    /// those that are gone (and `plan_failed`/`rollback` incidents of groups now in
    /// sync), and enqueue the notifications. Returns what was announced.
    ///
    /// Work and memory follow the groups with findings and the open incidents, not the
    /// size of the pass: a group without findings is only looked at, never copied.
    pub fn observe_drift<P: DriftObservations + ?Sized>(
        &mut self,
        store: &mut Store,
        pass: &P,
        now: SystemTime,
    ) -> Result<Vec<AlertNotice>, AlertError> {
        self.forget_old_resolves(now);
        let open = store
            .open_incidents()
            .map_err(AlertError::store("list of open incidents"))?;
        // Groups with findings (other than `unmanaged`, which are report only), their
        // findings by kind; a group without any is as good as absent.
        let mut present: BTreeMap<&GroupName, BTreeMap<DriftKind, Vec<&Finding>>> = BTreeMap::new();
        for index in 0..pass.groups() {
            let (name, findings) = pass.group(index);
            for finding in findings {
                // `policy_violation` has its own event, once per (group, image):
                // `Alerts::policy_violation`.
                if finding.kind != DriftKind::Unmanaged
                    && finding.kind != DriftKind::PolicyViolation
                {
                    present
                        .entry(name)
                        .or_default()
                        .entry(finding.kind)
                        .or_default()
                        .push(finding);
                }
            }
        }

        let mut to_resolve: BTreeMap<GroupName, Vec<IncidentRecord>> = BTreeMap::new();
        for incident in open {
            let Some(group) = incident.group.clone() else {
                continue;
            };
            let kinds = present.get(&group);
            let gone = if is_drift_kind(&incident.kind) {
                !kinds.is_some_and(|k| k.keys().any(|kind| kind.as_str() == incident.kind))
            } else if incident.kind == KIND_PLAN_FAILED || incident.kind == KIND_ROLLBACK {
                kinds.is_none_or(BTreeMap::is_empty)
            } else {
                false
            };
            if gone {
                to_resolve.entry(group).or_default().push(incident);
            }
        }

        // Where each resolving group is in the pass (its last position, should a name
        // appear twice), for the hashes its resolve notice shows.
        let mut resolving_at: BTreeMap<&GroupName, usize> = BTreeMap::new();
        if !to_resolve.is_empty() {
            for index in 0..pass.groups() {
                let (name, _) = pass.group(index);
                if to_resolve.contains_key(name) {
                    resolving_at.insert(name, index);
                }
            }
        }

        let mut notices = Vec::new();
        for (group, incidents) in to_resolve {
            let observation = resolving_at.get(&group).map(|&index| Observed {
                desired_hash: pass.desired_hash(index),
                observed_hashes: pass.observed_hashes(index),
            });
            if let Some(notice) =
                self.resolve_group(store, &group, incidents, observation, pass.commit(), now)?
            {
                notices.push(notice);
            }
        }

        for index in 0..pass.groups() {
            let (name, _) = pass.group(index);
            let Some(kinds) = present.get(name) else {
                continue;
            };
            let group = Observed {
                desired_hash: pass.desired_hash(index),
                observed_hashes: pass.observed_hashes(index),
            };
            let mut opened = Vec::new();
            for (kind, findings) in kinds {
                let summary = kind_summary(*kind, findings);
                let new = NewIncident {
                    id: new_incident_id(),
                    group: Some(name.clone()),
                    kind: kind.as_str().to_string(),
                    desired_hash: group.desired_hash,
                    observed_hashes: group.observed_hashes.clone(),
                    commit: Some(pass.commit().to_string()),
                    message: Some(summary),
                };
                let opening =
                    store
                        .open_incident(&new, now)
                        .map_err(AlertError::store(format!(
                            "open of a {kind} incident for group {name}"
                        )))?;
                if let IncidentOpening::Opened(record) = opening
                    && !self.hold_if_flapping(&record, now)
                {
                    opened.push(record);
                }
            }
            if opened.is_empty() {
                continue;
            }
            let parts: Vec<&str> = opened.iter().filter_map(|r| r.message.as_deref()).collect();
            let notice = AlertNotice {
                event: AlertEvent::DriftDetected,
                group: Some(name.clone()),
                incidents: opened.iter().map(|r| incident_ref(r, None)).collect(),
                desired_hash: group.desired_hash,
                observed_hashes: group.observed_hashes,
                commit: Some(pass.commit().to_string()),
                message: format!(
                    "group `{name}` diverged from Git at commit {}: {}",
                    pass.commit(),
                    parts.join("; ")
                ),
                at: now,
            };
            self.announce(store, &notice, &first_id(&notice), now)?;
            notices.push(notice);
        }

        notices.extend(self.announce_unannounced(store, now)?);
        Ok(notices)
    }

    /// A plan transition: `plan_started` and `plan_succeeded` are notifications (the
    /// latter resolves the group's plan incidents); `plan_failed` and `rollback` open
    /// incidents. Each plan's transition is announced once (delivery ids derive from the
    /// plan id).
    pub fn plan_event(
        &mut self,
        store: &mut Store,
        event: PlanAlert,
        now: SystemTime,
    ) -> Result<Vec<AlertNotice>, AlertError> {
        let mut notice = AlertNotice {
            event: AlertEvent::PlanStarted,
            group: Some(event.group.clone()),
            incidents: Vec::new(),
            desired_hash: event.target_hash,
            observed_hashes: event.observed_hashes.clone(),
            commit: Some(event.commit.clone()),
            message: event.message.clone(),
            at: now,
        };
        match event.kind {
            PlanAlertKind::Started => {
                let id = format!("{}:{}", event.plan_id, notice.event.as_str());
                self.enqueue(store, &notice, &id, None, now)?;
            }
            PlanAlertKind::Succeeded => {
                notice.event = AlertEvent::PlanSucceeded;
                let open: Vec<IncidentRecord> = store
                    .open_incidents()
                    .map_err(AlertError::store("list of open incidents"))?
                    .into_iter()
                    .filter(|i| {
                        i.group.as_ref() == Some(&event.group)
                            && (i.kind == KIND_PLAN_FAILED || i.kind == KIND_ROLLBACK)
                    })
                    .collect();
                notice.incidents = open
                    .iter()
                    .filter(|i| i.last_notified_at.is_some())
                    .map(|i| incident_ref(i, Some(now)))
                    .collect();
                let id = format!("{}:{}", event.plan_id, notice.event.as_str());
                self.enqueue(store, &notice, &id, None, now)?;
                for incident in &open {
                    self.resolve(store, incident, now)?;
                }
            }
            PlanAlertKind::Failed | PlanAlertKind::RolledBack => {
                let (kind, alert) = if event.kind == PlanAlertKind::Failed {
                    (KIND_PLAN_FAILED, AlertEvent::PlanFailed)
                } else {
                    (KIND_ROLLBACK, AlertEvent::Rollback)
                };
                notice.event = alert;
                let new = NewIncident {
                    id: new_incident_id(),
                    group: Some(event.group.clone()),
                    kind: kind.to_string(),
                    desired_hash: event.target_hash,
                    observed_hashes: event.observed_hashes.clone(),
                    commit: Some(event.commit.clone()),
                    message: Some(event.message.clone()),
                };
                let record = store
                    .open_incident(&new, now)
                    .map_err(AlertError::store(format!(
                        "open of a {kind} incident for plan {}",
                        event.plan_id
                    )))?
                    .record()
                    .clone();
                self.held.remove(&record.id);
                notice.incidents = vec![incident_ref(&record, None)];
                let id = format!("{}:{}", event.plan_id, alert.as_str());
                self.announce(store, &notice, &id, now)?;
            }
        }
        Ok(vec![notice])
    }

    /// Source health after each poll: `Some` for a rejected revision or an unreachable
    /// remote (opens the source incident, `source_error`), `None` when healthy
    /// (resolves it, `source_recovered`). Repeated errors refresh the open incident
    /// without a new notification.
    pub fn source_state(
        &mut self,
        store: &mut Store,
        error: Option<SourceAlert>,
        now: SystemTime,
    ) -> Result<Vec<AlertNotice>, AlertError> {
        self.forget_old_resolves(now);
        match error {
            Some(error) => {
                let new = NewIncident {
                    id: new_incident_id(),
                    group: None,
                    kind: KIND_SOURCE_ERROR.to_string(),
                    desired_hash: None,
                    observed_hashes: Vec::new(),
                    commit: error.revision.clone(),
                    message: Some(error.message.clone()),
                };
                let opening = store
                    .open_incident(&new, now)
                    .map_err(AlertError::store("open of the source incident"))?;
                let IncidentOpening::Opened(record) = opening else {
                    return Ok(Vec::new());
                };
                if self.hold_if_flapping(&record, now) {
                    return Ok(Vec::new());
                }
                let notice = single_notice(&record, AlertEvent::SourceError, None, now);
                self.announce(store, &notice, &first_id(&notice), now)?;
                Ok(vec![notice])
            }
            None => {
                let open = store
                    .open_incidents()
                    .map_err(AlertError::store("list of open incidents"))?;
                let Some(record) = open
                    .into_iter()
                    .find(|i| i.group.is_none() && i.kind == KIND_SOURCE_ERROR)
                else {
                    return Ok(Vec::new());
                };
                let mut notices = Vec::new();
                if record.last_notified_at.is_some() {
                    let mut notice =
                        single_notice(&record, AlertEvent::SourceRecovered, Some(now), now);
                    notice.message = format!(
                        "the desired-state source is healthy again after {} (was: {})",
                        elapsed(record.opened_at, now),
                        record.message.as_deref().unwrap_or("an error")
                    );
                    self.enqueue(store, &notice, &first_id(&notice), None, now)?;
                    notices.push(notice);
                }
                self.resolve(store, &record, now)?;
                Ok(notices)
            }
        }
    }

    /// Announce incidents never announced (held ones whose flap window passed, or ones
    /// a crash left unannounced), and re-send the opening event of still-open incidents
    /// to each receiver whose `renotify` interval has passed since its last notice.
    /// Cheap: call it after every pass.
    pub fn renotify(
        &mut self,
        store: &mut Store,
        now: SystemTime,
    ) -> Result<Vec<AlertNotice>, AlertError> {
        let mut notices = self.announce_unannounced(store, now)?;
        let Some(shortest) = self.receivers.iter().map(Receiver::renotify).min() else {
            return Ok(notices);
        };
        // The store lists incidents notified strictly before the cutoff; one millisecond
        // more makes "exactly one interval ago" due.
        let cutoff = now
            .checked_sub(shortest)
            .map_or(SystemTime::UNIX_EPOCH, |c| c + Duration::from_millis(1));
        let due = store
            .incidents_to_renotify(cutoff)
            .map_err(AlertError::store("list of incidents to re-notify"))?;
        for incident in due {
            let Some(last_any) = incident.last_notified_at else {
                continue; // held: announce_unannounced decides
            };
            let event = opening_event(&incident.kind);
            let mut notice = single_notice(&incident, event, None, now);
            notice.message = format!(
                "still open since {}: {}",
                phoenix_core::time::rfc3339_millis(incident.opened_at),
                incident.message.as_deref().unwrap_or(&incident.kind)
            );
            let id = format!(
                "{}:{}:renotify-{}",
                incident.id,
                event.as_str(),
                millis(now)
            );
            let receivers = self.receivers.clone();
            let mut any = false;
            for receiver in receivers.iter().filter(|r| r.wants(event)) {
                let last = self
                    .sent
                    .get(&(incident.id.clone(), receiver.name().to_string()))
                    .copied()
                    .unwrap_or(last_any);
                if now >= last + receiver.renotify() {
                    any |= self.enqueue(store, &notice, &id, Some(receiver.name()), now)? > 0;
                }
            }
            if any {
                store
                    .mark_incident_notified(&incident.id, now)
                    .map_err(AlertError::store("mark of a re-notified incident"))?;
                notices.push(notice);
            }
        }
        Ok(notices)
    }

    fn announce_unannounced(
        &mut self,
        store: &mut Store,
        now: SystemTime,
    ) -> Result<Vec<AlertNotice>, AlertError> {
        // A cutoff at the epoch lists exactly the incidents never notified.
        let never = store
            .incidents_to_renotify(SystemTime::UNIX_EPOCH)
            .map_err(AlertError::store("list of unannounced incidents"))?;
        let mut notices = Vec::new();
        for incident in never {
            if incident.last_notified_at.is_some() {
                continue;
            }
            if self
                .held
                .get(&incident.id)
                .is_some_and(|until| *until > now)
            {
                continue;
            }
            self.held.remove(&incident.id);
            let notice = single_notice(&incident, opening_event(&incident.kind), None, now);
            self.announce(store, &notice, &first_id(&notice), now)?;
            notices.push(notice);
        }
        Ok(notices)
    }

    /// Enqueue a notice that opens incidents, then record them as notified.
    fn announce(
        &mut self,
        store: &mut Store,
        notice: &AlertNotice,
        id_base: &str,
        now: SystemTime,
    ) -> Result<(), AlertError> {
        self.enqueue(store, notice, id_base, None, now)?;
        for incident in &notice.incidents {
            store
                .mark_incident_notified(&incident.id, now)
                .map_err(AlertError::store("mark of an announced incident"))?;
        }
        Ok(())
    }

    /// Render `notice` for every receiver that wants it (or only `only`) and write it to
    /// the outbox with delivery id `{id_base}:{receiver}`. Returns how many were written.
    pub(super) fn enqueue(
        &mut self,
        store: &mut Store,
        notice: &AlertNotice,
        id_base: &str,
        only: Option<&str>,
        now: SystemTime,
    ) -> Result<usize, AlertError> {
        let mut written = 0;
        let receivers = self.receivers.clone();
        for receiver in receivers
            .iter()
            .filter(|r| r.wants(notice.event) && only.is_none_or(|name| name == r.name()))
        {
            let delivery_id = DeliveryId::new(format!("{id_base}:{}", receiver.name()));
            let body = match receiver.kind() {
                AlertType::Webhook => webhook_body(notice, &delivery_id),
                AlertType::Slack => slack_body(notice, &self.options.owner),
                AlertType::Alertmanager => {
                    let style = AlertmanagerStyle {
                        owner: &self.options.owner,
                        external_url: self.options.external_url.as_deref(),
                        firing_ttl: receiver.renotify().saturating_mul(2),
                    };
                    match alertmanager_body(notice, &style) {
                        Some(body) => body,
                        None => continue,
                    }
                }
            };
            let alert = NewAlert {
                delivery_id,
                receiver: receiver.name().to_string(),
                event: notice.event,
                incident_id: notice.incident_id().cloned(),
                body,
                expires_at: now + receiver.expire_after(),
            };
            store
                .enqueue_alert(&alert, now)
                .map_err(AlertError::store(format!(
                    "enqueue of {} for receiver {}",
                    alert.delivery_id,
                    receiver.name()
                )))?;
            for incident in &notice.incidents {
                self.sent
                    .insert((incident.id.clone(), receiver.name().to_string()), now);
            }
            written += 1;
        }
        if written > 0 {
            self.wake.notify_one();
        }
        Ok(written)
    }

    /// Resolve the given open incidents of one group, announcing those that were
    /// announced in one `drift_resolved` (enqueued before the resolve is committed).
    fn resolve_group(
        &mut self,
        store: &mut Store,
        group: &GroupName,
        incidents: Vec<IncidentRecord>,
        observation: Option<Observed>,
        commit: &str,
        now: SystemTime,
    ) -> Result<Option<AlertNotice>, AlertError> {
        let announced: Vec<&IncidentRecord> = incidents
            .iter()
            .filter(|i| i.last_notified_at.is_some())
            .collect();
        let notice = match announced.first() {
            None => None,
            Some(primary) => {
                let kinds: Vec<String> = announced
                    .iter()
                    .map(|i| format!("{} (open {})", i.kind, elapsed(i.opened_at, now)))
                    .collect();
                let notice = AlertNotice {
                    event: AlertEvent::DriftResolved,
                    group: Some(group.clone()),
                    incidents: announced
                        .iter()
                        .map(|i| incident_ref(i, Some(now)))
                        .collect(),
                    desired_hash: observation
                        .as_ref()
                        .and_then(|o| o.desired_hash)
                        .or(primary.desired_hash),
                    observed_hashes: observation
                        .map(|o| o.observed_hashes)
                        .unwrap_or_else(|| primary.observed_hashes.clone()),
                    commit: Some(commit.to_string()),
                    message: format!(
                        "group `{group}` is back in sync with Git at commit {commit}: resolved {}",
                        kinds.join(", ")
                    ),
                    at: now,
                };
                self.enqueue(store, &notice, &first_id(&notice), None, now)?;
                Some(notice)
            }
        };
        for incident in &incidents {
            self.resolve(store, incident, now)?;
        }
        Ok(notice)
    }

    fn resolve(
        &mut self,
        store: &mut Store,
        incident: &IncidentRecord,
        now: SystemTime,
    ) -> Result<(), AlertError> {
        store
            .resolve_incident(&incident.id, now)
            .map_err(AlertError::store(format!(
                "resolve of incident {}",
                incident.id
            )))?;
        self.held.remove(&incident.id);
        self.sent.retain(|(id, _), _| *id != incident.id);
        self.recently_resolved
            .insert((incident.group.clone(), incident.kind.clone()), now);
        Ok(())
    }

    /// Hold a just-opened incident back when its scope resolved within the flap window.
    fn hold_if_flapping(&mut self, record: &IncidentRecord, now: SystemTime) -> bool {
        let scope = (record.group.clone(), record.kind.clone());
        let flapping = self
            .recently_resolved
            .get(&scope)
            .is_some_and(|resolved| since(*resolved, now) < self.options.flap_window);
        if flapping {
            self.held
                .insert(record.id.clone(), now + self.options.flap_window);
        }
        flapping
    }

    fn forget_old_resolves(&mut self, now: SystemTime) {
        let window = self.options.flap_window;
        self.recently_resolved
            .retain(|_, resolved| since(*resolved, now) < window);
    }
}

/// The event that announces an incident of `kind`.
fn opening_event(kind: &str) -> AlertEvent {
    match kind {
        KIND_PLAN_FAILED => AlertEvent::PlanFailed,
        KIND_ROLLBACK => AlertEvent::Rollback,
        KIND_SOURCE_ERROR => AlertEvent::SourceError,
        _ => AlertEvent::DriftDetected,
    }
}

fn new_incident_id() -> IncidentId {
    IncidentId::new(format!("inc-{:032x}", rand::random::<u128>()))
}

/// Delivery-id base of a notice about incidents: `{primary incident}:{event}`.
fn first_id(notice: &AlertNotice) -> String {
    let incident = notice
        .incident_id()
        .map(IncidentId::as_str)
        .unwrap_or("none");
    format!("{incident}:{}", notice.event.as_str())
}

fn incident_ref(record: &IncidentRecord, resolved_at: Option<SystemTime>) -> IncidentRef {
    IncidentRef {
        id: record.id.clone(),
        kind: record.kind.clone(),
        opened_at: record.opened_at,
        resolved_at,
        message: record
            .message
            .clone()
            .unwrap_or_else(|| record.kind.clone()),
    }
}

fn single_notice(
    record: &IncidentRecord,
    event: AlertEvent,
    resolved_at: Option<SystemTime>,
    now: SystemTime,
) -> AlertNotice {
    AlertNotice {
        event,
        group: record.group.clone(),
        incidents: vec![incident_ref(record, resolved_at)],
        desired_hash: record.desired_hash,
        observed_hashes: record.observed_hashes.clone(),
        commit: record.commit.clone(),
        message: record
            .message
            .clone()
            .unwrap_or_else(|| record.kind.clone()),
        at: now,
    }
}

/// One line per drift kind, e.g. `modified: 1 instance (i-1 instanceType t3.micro -> t3.large)`.
fn kind_summary(kind: DriftKind, findings: &[&Finding]) -> String {
    let counted: u32 = findings.iter().filter_map(|f| f.count).sum();
    let mut instances: Vec<&str> = findings
        .iter()
        .filter_map(|f| f.instance_id.as_deref())
        .collect();
    instances.dedup();
    let n = if counted > 0 {
        counted as usize
    } else {
        instances.len()
    };
    let noun = if n == 1 { "instance" } else { "instances" };
    let details: Vec<String> = findings
        .iter()
        .filter_map(|f| {
            let id = f.instance_id.as_deref()?;
            Some(match (&f.field, &f.expected, &f.observed) {
                (Some(field), Some(expected), Some(observed)) => {
                    format!("{id} {field} {expected} -> {observed}")
                }
                _ => id.to_string(),
            })
        })
        .take(3)
        .collect();
    let more = if findings.len() > details.len() && !details.is_empty() {
        ", ..."
    } else {
        ""
    };
    if details.is_empty() {
        format!("{kind}: {n} {noun}")
    } else {
        format!("{kind}: {n} {noun} ({}{more})", details.join(", "))
    }
}

fn since(earlier: SystemTime, now: SystemTime) -> Duration {
    now.duration_since(earlier).unwrap_or_default()
}

fn elapsed(opened: SystemTime, now: SystemTime) -> String {
    humantime::format_duration(Duration::from_secs(since(opened, now).as_secs())).to_string()
}

fn millis(at: SystemTime) -> u128 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

#[cfg(test)]
mod tests {
    use phoenix_core::drift::Field;
    use phoenix_store::{OutboxEntry, StoreOptions};

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn config(name: &str, kind: AlertType, renotify: Duration) -> AlertConfig {
        AlertConfig {
            name: name.into(),
            kind,
            url: "http://127.0.0.1:9/".into(),
            secret_env: None,
            events: AlertEvent::ALL.to_vec(),
            renotify,
            expire_after: 24 * HOUR,
        }
    }

    fn setup(configs: Vec<AlertConfig>) -> (Alerts, Store) {
        let secrets = configs
            .iter()
            .map(|c| (c.name.clone(), b"secret".to_vec()))
            .collect();
        let alerts = Alerts::new(&configs, &secrets, AlertOptions::default()).expect("alerts");
        let store = Store::open_in_memory(StoreOptions::default()).expect("store");
        (alerts, store)
    }

    fn webhook_only() -> (Alerts, Store) {
        setup(vec![config("ops", AlertType::Webhook, 4 * HOUR)])
    }

    fn hash(n: u8) -> SpecHash {
        format!("v1:sha256:{}", hex::encode([n; 32]))
            .parse()
            .expect("hash")
    }

    fn finding(kind: DriftKind, instance: Option<&str>) -> Finding {
        Finding {
            kind,
            group: Some("web".into()),
            provider: "sim".into(),
            instance_id: instance.map(str::to_owned),
            count: instance.is_none().then_some(1),
            field: (kind == DriftKind::Modified).then_some(Field::InstanceType),
            expected: (kind == DriftKind::Modified).then(|| "t3.micro".into()),
            observed: (kind == DriftKind::Modified).then(|| "t3.large".into()),
            reason: String::new(),
        }
    }

    fn pass(findings: Vec<Finding>) -> DriftPass {
        DriftPass {
            commit: "c1".into(),
            groups: vec![GroupObservation {
                name: GroupName::new("web").expect("name"),
                desired_hash: Some(hash(1)),
                observed_hashes: vec![hash(1)],
                findings,
            }],
        }
    }

    /// Everything in the outbox, in order.
    fn outbox(store: &Store) -> Vec<OutboxEntry> {
        store.due_alerts(t(1_000_000), 1000).expect("due alerts")
    }

    /// `receiver:event` of everything in the outbox, in order.
    fn events(store: &Store) -> Vec<String> {
        outbox(store)
            .into_iter()
            .map(|e| format!("{}:{}", e.receiver, e.event.as_str()))
            .collect()
    }

    #[test]
    fn observation_from_drift_keeps_findings_and_valid_hashes() {
        let drift = GroupDrift {
            findings: vec![finding(DriftKind::Outdated, Some("i-1"))],
            current: Vec::new(),
            replace: Vec::new(),
            observed_hashes: vec![
                phoenix_core::drift::HashCount {
                    hash: "(none)".into(),
                    count: 1,
                },
                phoenix_core::drift::HashCount {
                    hash: hash(2).to_string().into(),
                    count: 2,
                },
            ],
        };
        let name = GroupName::new("web").expect("name");
        let observation = GroupObservation::from_drift(name, hash(1), &drift);
        assert_eq!(observation.desired_hash, Some(hash(1)));
        assert_eq!(observation.observed_hashes, [hash(2)]);
        assert_eq!(observation.findings, drift.findings);
    }

    #[test]
    fn one_notice_on_open_and_one_on_resolve() {
        let (mut alerts, mut store) = webhook_only();
        let modified = || pass(vec![finding(DriftKind::Modified, Some("i-1"))]);
        assert_eq!(
            alerts
                .observe_drift(&mut store, &modified(), t(0))
                .expect("observe")
                .len(),
            1
        );
        assert!(
            alerts
                .observe_drift(&mut store, &modified(), t(60))
                .expect("observe")
                .is_empty()
        );
        assert_eq!(
            alerts
                .observe_drift(&mut store, &pass(vec![]), t(120))
                .expect("observe")
                .len(),
            1
        );
        assert!(
            alerts
                .observe_drift(&mut store, &pass(vec![]), t(180))
                .expect("observe")
                .is_empty()
        );
        assert_eq!(events(&store), ["ops:drift_detected", "ops:drift_resolved"]);
        let entries = outbox(&store);
        assert_eq!(entries[0].incident_id, entries[1].incident_id);
        assert!(store.open_incidents().expect("open").is_empty());
    }

    #[test]
    fn kinds_opening_together_share_one_notice_and_each_is_an_incident() {
        let (mut alerts, mut store) = webhook_only();
        let findings = vec![
            finding(DriftKind::Outdated, Some("i-1")),
            finding(DriftKind::Outdated, Some("i-2")),
            finding(DriftKind::Missing, None),
            finding(DriftKind::Unmanaged, Some("i-x")),
        ];
        let notices = alerts
            .observe_drift(&mut store, &pass(findings), t(0))
            .expect("observe");
        assert_eq!(notices.len(), 1);
        let kinds: Vec<&str> = notices[0]
            .incidents
            .iter()
            .map(|i| i.kind.as_str())
            .collect();
        assert_eq!(kinds, ["missing", "outdated"], "unmanaged is report-only");
        assert!(
            notices[0]
                .message
                .contains("outdated: 2 instances (i-1, i-2)"),
            "{}",
            notices[0].message
        );
        assert_eq!(store.open_incidents().expect("open").len(), 2);
        assert_eq!(outbox(&store).len(), 1);
        // Only `missing` goes away: one resolve for it; `outdated` stays open.
        let notices = alerts
            .observe_drift(
                &mut store,
                &pass(vec![finding(DriftKind::Outdated, Some("i-1"))]),
                t(60),
            )
            .expect("observe");
        assert_eq!(notices.len(), 1);
        assert_eq!(notices[0].event, AlertEvent::DriftResolved);
        assert_eq!(notices[0].drift_kind(), Some("missing"));
        assert_eq!(store.open_incidents().expect("open").len(), 1);
    }

    #[test]
    fn a_reopen_within_the_flap_window_is_held_then_announced_if_it_stays() {
        let (mut alerts, mut store) = webhook_only();
        let unhealthy = || pass(vec![finding(DriftKind::Unhealthy, Some("i-1"))]);
        alerts
            .observe_drift(&mut store, &unhealthy(), t(0))
            .expect("observe");
        alerts
            .observe_drift(&mut store, &pass(vec![]), t(60))
            .expect("observe");
        // Flaps: re-opens 30 s after resolving, resolves again, re-opens again.
        assert!(
            alerts
                .observe_drift(&mut store, &unhealthy(), t(90))
                .expect("observe")
                .is_empty()
        );
        assert!(
            alerts
                .observe_drift(&mut store, &pass(vec![]), t(120))
                .expect("observe")
                .is_empty()
        );
        assert!(
            alerts
                .observe_drift(&mut store, &unhealthy(), t(150))
                .expect("observe")
                .is_empty()
        );
        assert_eq!(outbox(&store).len(), 2, "only the first detect and resolve");
        // Still open when the window (5 min) has passed: announced now.
        assert!(
            alerts
                .renotify(&mut store, t(300))
                .expect("renotify")
                .is_empty()
        );
        let late = alerts.renotify(&mut store, t(451)).expect("renotify");
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].event, AlertEvent::DriftDetected);
        assert_eq!(outbox(&store).len(), 3);
        // And its resolve is announced too, because its opening was.
        let resolved = alerts
            .observe_drift(&mut store, &pass(vec![]), t(500))
            .expect("observe");
        assert_eq!(resolved.len(), 1);
    }

    #[test]
    fn reminders_follow_each_receivers_interval() {
        let (mut alerts, mut store) = setup(vec![
            config("fast", AlertType::Webhook, HOUR),
            config("slow", AlertType::Slack, 4 * HOUR),
        ]);
        alerts
            .observe_drift(
                &mut store,
                &pass(vec![finding(DriftKind::Modified, Some("i-1"))]),
                t(0),
            )
            .expect("observe");
        assert_eq!(outbox(&store).len(), 2);
        assert!(
            alerts
                .renotify(&mut store, t(1800))
                .expect("renotify")
                .is_empty()
        );
        for hour in 1..=4 {
            alerts
                .renotify(&mut store, t(hour * 3600))
                .expect("renotify");
        }
        let reminders: Vec<String> = outbox(&store)[2..]
            .iter()
            .map(|e| e.receiver.clone())
            .collect();
        assert_eq!(reminders, ["fast", "fast", "fast", "fast", "slow"]);
        let last = outbox(&store).pop().expect("an entry");
        assert_eq!(last.event, AlertEvent::DriftDetected);
        assert!(last.delivery_id.as_str().contains("renotify"));
    }

    #[test]
    fn alertmanager_reminders_extend_the_firing_alert() {
        let (mut alerts, mut store) = setup(vec![config("am", AlertType::Alertmanager, HOUR)]);
        alerts
            .observe_drift(
                &mut store,
                &pass(vec![finding(DriftKind::Missing, None)]),
                t(0),
            )
            .expect("observe");
        alerts.renotify(&mut store, t(3600)).expect("renotify");
        let entries = outbox(&store);
        assert_eq!(entries.len(), 2);
        let ends_at = |entry: &OutboxEntry| {
            let body: serde_json::Value = serde_json::from_str(&entry.body).expect("json");
            body[0]["endsAt"].as_str().expect("endsAt").to_string()
        };
        assert_eq!(
            ends_at(&entries[0]),
            phoenix_core::time::rfc3339_millis(t(2 * 3600))
        );
        assert_eq!(
            ends_at(&entries[1]),
            phoenix_core::time::rfc3339_millis(t(3 * 3600))
        );
    }

    /// Only groups with findings or open incidents matter, among many that are in sync;
    /// a name reported twice (a group's orphans on a provider it left) opens with the
    /// first report's hashes and resolves with the last one's.
    #[test]
    fn a_pass_of_many_groups_acts_only_on_the_drifted_and_the_resolving() {
        let (mut alerts, mut store) = webhook_only();
        let group =
            |name: &str, desired: Option<SpecHash>, observed: u8, findings| GroupObservation {
                name: GroupName::new(name).expect("name"),
                desired_hash: desired,
                observed_hashes: vec![hash(observed)],
                findings,
            };
        let mut orphaned = finding(DriftKind::Orphaned, Some("i-9"));
        orphaned.provider = "old-cloud".into();
        let in_sync = |n: u8| group(&format!("g{n}"), Some(hash(n)), n, vec![]);
        let mut first = DriftPass {
            commit: "c1".into(),
            groups: (10..20).map(in_sync).collect(),
        };
        first.groups.push(group("web", Some(hash(1)), 1, vec![]));
        first.groups.push(group("web", None, 3, vec![orphaned]));
        let notices = alerts
            .observe_drift(&mut store, &first, t(0))
            .expect("observe");
        assert_eq!(notices.len(), 1);
        assert_eq!(
            notices[0].group.as_ref().map(GroupName::as_str),
            Some("web")
        );
        assert_eq!(notices[0].desired_hash, Some(hash(1)), "the first report's");
        assert_eq!(notices[0].observed_hashes, [hash(1)]);
        assert_eq!(store.open_incidents().expect("open").len(), 1);

        let mut second = DriftPass {
            commit: "c2".into(),
            groups: (10..20).map(in_sync).collect(),
        };
        second
            .groups
            .insert(0, group("web", Some(hash(2)), 2, vec![]));
        let notices = alerts
            .observe_drift(&mut store, &second, t(60))
            .expect("observe");
        assert_eq!(notices.len(), 1);
        assert_eq!(notices[0].event, AlertEvent::DriftResolved);
        assert_eq!(notices[0].desired_hash, Some(hash(2)), "this pass's");
        assert_eq!(notices[0].observed_hashes, [hash(2)]);
        assert!(store.open_incidents().expect("open").is_empty());
        assert_eq!(events(&store), ["ops:drift_detected", "ops:drift_resolved"]);
    }

    #[test]
    fn a_failed_plan_is_an_incident_that_a_successful_plan_resolves() {
        let (mut alerts, mut store) = setup(vec![
            config("ops", AlertType::Webhook, 4 * HOUR),
            config("am", AlertType::Alertmanager, 4 * HOUR),
        ]);
        let plan = |kind, id: &str| PlanAlert {
            kind,
            plan_id: PlanId::new(id),
            group: GroupName::new("web").expect("name"),
            target_hash: Some(hash(2)),
            observed_hashes: vec![hash(1)],
            commit: "c2".into(),
            message: "health deadline passed".into(),
        };
        alerts
            .plan_event(&mut store, plan(PlanAlertKind::Started, "p1"), t(0))
            .expect("plan");
        alerts
            .plan_event(&mut store, plan(PlanAlertKind::Failed, "p1"), t(60))
            .expect("plan");
        alerts
            .plan_event(&mut store, plan(PlanAlertKind::Started, "p2"), t(120))
            .expect("plan");
        let done = alerts
            .plan_event(&mut store, plan(PlanAlertKind::Succeeded, "p2"), t(180))
            .expect("plan");
        assert_eq!(done[0].incidents.len(), 1, "resolves the failure");
        assert!(store.open_incidents().expect("open").is_empty());
        // Alertmanager gets only incident events: the failure and its resolution.
        assert_eq!(
            events(&store),
            [
                "ops:plan_started",
                "ops:plan_failed",
                "am:plan_failed",
                "ops:plan_started",
                "ops:plan_succeeded",
                "am:plan_succeeded",
            ]
        );
        // Repeating a transition (e.g. after a crash) enqueues nothing new.
        alerts
            .plan_event(&mut store, plan(PlanAlertKind::Started, "p2"), t(200))
            .expect("plan");
        assert_eq!(outbox(&store).len(), 6);
    }

    #[test]
    fn source_errors_open_once_and_recover_once() {
        let (mut alerts, mut store) = webhook_only();
        let error = || {
            Some(SourceAlert {
                revision: Some("r2".into()),
                message: "groups/web.yaml:7:3: unknown field `replica`".into(),
            })
        };
        assert_eq!(
            alerts
                .source_state(&mut store, error(), t(0))
                .expect("source")
                .len(),
            1
        );
        assert!(
            alerts
                .source_state(&mut store, error(), t(30))
                .expect("source")
                .is_empty()
        );
        assert_eq!(
            alerts
                .source_state(&mut store, None, t(60))
                .expect("source")
                .len(),
            1
        );
        assert!(
            alerts
                .source_state(&mut store, None, t(90))
                .expect("source")
                .is_empty()
        );
        assert_eq!(events(&store), ["ops:source_error", "ops:source_recovered"]);
    }

    #[test]
    fn an_incident_left_unannounced_by_a_crash_is_announced_later() {
        let (mut alerts, mut store) = webhook_only();
        // The incident was committed, then the process died before enqueueing.
        store
            .open_incident(
                &NewIncident {
                    id: IncidentId::new("inc-crash"),
                    group: Some(GroupName::new("web").expect("name")),
                    kind: "modified".into(),
                    desired_hash: Some(hash(1)),
                    observed_hashes: vec![hash(1)],
                    commit: Some("c1".into()),
                    message: Some("modified: 1 instance".into()),
                },
                t(0),
            )
            .expect("open");
        let notices = alerts.renotify(&mut store, t(10)).expect("renotify");
        assert_eq!(notices.len(), 1);
        assert_eq!(
            outbox(&store)[0].delivery_id.as_str(),
            "inc-crash:drift_detected:ops"
        );
    }
}
