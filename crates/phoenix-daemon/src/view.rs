//! Building the API's immutable [`Snapshot`] from what the loop knows: the revision in
//! force, the newest rejection, the last inventories, the last plan document, and the
//! store's plans and history.
//!
//! Pure apart from store reads; called once per pass by the loop, never by handlers.
//! A pass costs O(groups + instances), never O(groups x instances): inventories are
//! indexed by group once per build, and group histories are kept in memory
//! ([`Histories`]) and re-read only for the groups whose history the store reports
//! changed, instead of one store query per group per pass. Each group's history is one
//! shared, exactly sized list that every snapshot points at rather than copies, and a
//! group equal to the previous snapshot's is that snapshot's own `Arc<Group>`, so the
//! old and new snapshot alive at a publish do not each hold every group.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use phoenix_api::{
    AlertCounts, DriftFinding, Group, GroupHealth, GroupInstance, GroupSummary, HashText,
    HistoryEntry, HistoryOutcome, ObservedHash, Operation, Plan, PlanKind, PlanState, PlanStep,
    ProviderInventory, Revision, RevisionError, RevisionSignature, Snapshot, SnapshotParts,
    StepState, SyncState,
};
use phoenix_core::drift::{DriftKind, Finding};
use phoenix_core::model::{Instance, InstanceHealth, Inventory};
use phoenix_core::plan::{GroupReport, GroupStatus, PlanDocument};
use phoenix_core::{SpecHash, Text, tags};
use phoenix_source::Rejection;
use phoenix_store::{GenerationOutcome, PlanRecord, PlanStatus, PlanWithSteps, StepStatus, Store};

/// A drift finding's identity, for remembering since when it has been open.
pub type FindingKey = (String, DriftKind, Option<String>, Option<String>);

/// The identity of a finding: group, kind, instance, field.
pub fn finding_key(group: &str, finding: &Finding) -> FindingKey {
    (
        group.to_string(),
        finding.kind,
        finding.instance_id.clone(),
        finding.field.map(|f| f.as_str().to_string()),
    )
}

/// Everything the snapshot is built from.
#[derive(Debug)]
pub struct ViewInput<'a> {
    /// At least one complete reconcile pass has finished.
    pub ready: bool,
    /// The revision in force and when it was accepted.
    pub revision: Option<(&'a str, SystemTime)>,
    /// Why the newest revision was rejected, if it was.
    pub rejection: Option<&'a Rejection>,
    /// The verified signature of the revision in force (`source.git.verify`).
    pub signature: Option<&'a phoenix_source::Signature>,
    /// Why the source could not be read, if it could not (no position).
    pub source_error: Option<&'a str>,
    /// The last inventory of every provider.
    pub inventories: &'a [Inventory],
    /// The target groups read in the last pass (`spec.traffic`).
    pub traffic: &'a phoenix_core::traffic::TrafficView,
    /// The last plan document.
    pub document: Option<&'a PlanDocument>,
    /// Since when each open finding has been open.
    pub since: &'a HashMap<FindingKey, SystemTime>,
    /// Alert outbox counts.
    pub alerts: AlertCounts,
    /// The snapshot being replaced: its groups are reused where nothing changed, so the
    /// old and new snapshot share them instead of both holding a copy.
    pub previous: Option<&'a Snapshot>,
    /// Change windows and the override, evaluated for every group at `now`.
    pub windows: &'a crate::windows::LoopWindows,
}

/// Every group's history as the API shows it, kept between passes.
///
/// The first [`Histories::refresh`] reads all history in one pass over the store; later
/// ones re-read only the groups the store says it changed since
/// ([`Store::take_history_changes`]). Only the loop's own store connection writes
/// history, so nothing is missed.
///
/// Each group's entries are one exactly sized `Arc<[HistoryEntry]>` that
/// [`Histories::get`] hands to the snapshot, so publishing a snapshot copies no history
/// and consecutive snapshots share it. Commits are kept once (most groups' entries name
/// the same few commits); see [`HistoryEntry`] for the rest of an entry's size.
#[derive(Debug, Default)]
pub struct Histories {
    by_group: HashMap<Box<str>, Arc<[HistoryEntry]>>,
    /// Every commit an entry names, once; pruned of commits no entry names.
    commits: HashSet<Text>,
    /// What a group without history gets.
    empty: Arc<[HistoryEntry]>,
    loaded: bool,
}

impl Histories {
    /// Bring the cache up to date with the store. A read error leaves the cache to be
    /// read whole on the next call (and logs); the API shows what it had.
    pub fn refresh(&mut self, store: &mut Store) {
        let changed = store.take_history_changes();
        if !self.loaded {
            self.load_all(store);
            return;
        }
        if changed.is_empty() {
            return;
        }
        for group in changed {
            match store.history(&group) {
                Ok(entries) if entries.is_empty() => {
                    self.by_group.remove(group.as_str());
                }
                Ok(entries) => {
                    let entries: Arc<[HistoryEntry]> = entries
                        .into_iter()
                        .map(|h| history_entry(&mut self.commits, h))
                        .collect();
                    match self.by_group.get_mut(group.as_str()) {
                        Some(slot) => *slot = entries,
                        None => {
                            self.by_group.insert(group.as_str().into(), entries);
                        }
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %phoenix_core::chain(&err), group = %group, "cannot read group history");
                    self.loaded = false;
                }
            }
        }
        self.forget_unused_commits();
    }

    /// Read every group's history in one pass, group by group, without holding all the
    /// rows at once.
    fn load_all(&mut self, store: &Store) {
        let mut by_group: HashMap<Box<str>, Arc<[HistoryEntry]>> = HashMap::new();
        let mut group: Option<phoenix_core::GroupName> = None;
        let mut entries: Vec<HistoryEntry> = Vec::new();
        let mut flush = |group: Option<phoenix_core::GroupName>, entries: &mut Vec<_>| {
            if let Some(group) = group {
                by_group.insert(group.as_str().into(), entries.drain(..).collect());
            }
        };
        let read = store.for_each_history(|h| {
            if group.as_ref() != Some(&h.group) {
                flush(group.replace(h.group.clone()), &mut entries);
            }
            entries.push(history_entry(&mut self.commits, h));
        });
        match read {
            Ok(()) => {
                flush(group, &mut entries);
                self.by_group = by_group;
                self.loaded = true;
            }
            Err(err) => {
                tracing::warn!(error = %phoenix_core::chain(&err), "cannot read group history")
            }
        }
        self.forget_unused_commits();
    }

    /// Drop the commits no entry names any more (one pass over the entries, after a
    /// refresh that read from the store, which costs far more).
    fn forget_unused_commits(&mut self) {
        let named: HashSet<&str> = self
            .by_group
            .values()
            .flat_map(|entries| entries.iter())
            .filter_map(|entry| entry.commit.as_deref())
            .collect();
        self.commits
            .retain(|commit| named.contains(commit.as_str()));
    }

    /// The group's generations, newest first, shared with the cache.
    pub fn get(&self, group: &str) -> Arc<[HistoryEntry]> {
        self.by_group.get(group).unwrap_or(&self.empty).clone()
    }
}

/// The API's form of a store history entry, its commit taken from (or added to) `commits`.
fn history_entry(commits: &mut HashSet<Text>, h: phoenix_store::HistoryEntry) -> HistoryEntry {
    let commit = match commits.get(h.commit.as_str()) {
        Some(commit) => commit.clone(),
        None => {
            let commit = Text::from(h.commit);
            commits.insert(commit.clone());
            commit
        }
    };
    HistoryEntry {
        spec_hash: h.spec_hash,
        commit: Some(commit),
        first_seen: h.first_seen.into(),
        last_seen: h.last_seen.into(),
        outcome: history_outcome(h.outcome),
    }
}

/// Owned instances of one provider's inventory by group name.
type ByGroup<'a> = HashMap<&'a str, Vec<&'a Instance>>;

/// Build the snapshot. Store errors degrade to empty plan lists rather than failing the
/// whole view: the API must keep answering.
pub fn build(
    store: &Store,
    input: &ViewInput<'_>,
    histories: &Histories,
    now: SystemTime,
) -> Arc<Snapshot> {
    let plans_with_steps = load_plans(store);
    let active: HashMap<&str, &PlanWithSteps> = plans_with_steps
        .iter()
        .filter(|p| p.plan.status.is_active())
        .map(|p| (p.plan.group.as_str(), p))
        .collect();
    let last_finished: HashMap<&str, &PlanRecord> = {
        let mut map = HashMap::new();
        for p in &plans_with_steps {
            if !p.plan.status.is_active() {
                map.entry(p.plan.group.as_str()).or_insert(&p.plan);
            }
        }
        map
    };

    let members: HashMap<&str, ByGroup<'_>> = input
        .inventories
        .iter()
        .map(|inv| {
            let mut by_group: ByGroup<'_> = HashMap::new();
            for instance in &inv.instances {
                if let (Some(group), Some(_)) = (instance.group(), instance.owner()) {
                    by_group.entry(group).or_default().push(instance);
                }
            }
            (inv.provider.as_str(), by_group)
        })
        .collect();
    let groups = match input.document {
        Some(doc) => doc
            .groups
            .iter()
            .map(|report| {
                let previous = input
                    .previous
                    .and_then(|p| p.shared_group(report.name.as_str()));
                let instances = members
                    .get(report.provider.as_str())
                    .and_then(|by_group| by_group.get(report.name.as_str()))
                    .map_or(&[][..], Vec::as_slice);
                let sources = GroupSources {
                    members: instances,
                    history: histories.get(report.name.as_str()),
                    active: active.get(report.name.as_str()).copied(),
                    last_finished: last_finished.get(report.name.as_str()).copied(),
                    previous: previous.map(|g| &**g),
                };
                let group = group_view(report, sources, input, now);
                share_unchanged(previous, group)
            })
            .collect(),
        None => Vec::new(),
    };

    let revision = Revision {
        id: input.revision.map(|(id, _)| id.to_string()),
        accepted_at: input.revision.map(|(_, at)| at),
        error: revision_error(input.rejection, input.source_error),
        signature: input.signature.map(|s| RevisionSignature {
            kind: s.kind.as_str().to_string(),
            key: s.key.clone(),
            signer: s.signer.clone(),
        }),
    };
    let inventory = input
        .inventories
        .iter()
        .map(|inv| ProviderInventory {
            provider: inv.provider.clone(),
            complete: inv.complete,
            collected_at: Some(inv.collected_at),
            instances: inv.instances.len(),
        })
        .collect();
    let plans = plans_with_steps.iter().map(plan_view).collect();
    let windows = input
        .windows
        .view(groups.iter().map(|g: &Arc<Group>| &g.summary.name), now);
    Arc::new(Snapshot::new(SnapshotParts {
        ready: input.ready,
        revision,
        inventory,
        groups,
        plans,
        alerts: input.alerts,
        windows,
    }))
}

fn load_plans(store: &Store) -> Vec<PlanWithSteps> {
    let records = match store.recent_plans(None, 200) {
        Ok(records) => records,
        Err(err) => {
            tracing::warn!(error = %phoenix_core::chain(&err), "cannot read plans for the status view");
            return Vec::new();
        }
    };
    records
        .into_iter()
        .filter_map(|record| match store.steps(&record.id) {
            Ok(steps) => Some(PlanWithSteps {
                plan: record,
                steps,
            }),
            Err(err) => {
                tracing::warn!(error = %phoenix_core::chain(&err), plan = %record.id, "cannot read plan steps");
                None
            }
        })
        .collect()
}

/// The API's view of a rejected revision: its first problem, with position.
pub fn rejection_error(rejection: &Rejection) -> RevisionError {
    let problem = rejection.primary();
    RevisionError {
        revision: rejection.revision.to_string(),
        commit: problem.commit.as_ref().map(ToString::to_string),
        path: problem.path.clone(),
        line: problem.line.and_then(|l| u32::try_from(l).ok()),
        column: problem.column.and_then(|c| u32::try_from(c).ok()),
        message: problem.message.clone(),
    }
}

fn revision_error(
    rejection: Option<&Rejection>,
    source_error: Option<&str>,
) -> Option<RevisionError> {
    if let Some(rejection) = rejection {
        return Some(rejection_error(rejection));
    }
    source_error.map(|message| RevisionError {
        revision: String::new(),
        commit: None,
        path: None,
        line: None,
        column: None,
        message: message.to_string(),
    })
}

/// The previous snapshot's copy of `group` when it is equal (so both snapshots hold one
/// copy), else `group` itself.
fn share_unchanged(previous: Option<&Arc<Group>>, group: Group) -> Arc<Group> {
    match previous {
        Some(old) if **old == group => Arc::clone(old),
        _ => Arc::new(group),
    }
}

/// What one group's view is built from besides its report.
struct GroupSources<'a> {
    /// The group's instances on its provider.
    members: &'a [&'a Instance],
    /// Its history, shared with the cache.
    history: Arc<[HistoryEntry]>,
    /// The plan acting on it, if any.
    active: Option<&'a PlanWithSteps>,
    /// Its newest finished plan, if any.
    last_finished: Option<&'a PlanRecord>,
    /// The group in the snapshot being replaced, if it was there.
    previous: Option<&'a Group>,
}

fn group_view(
    report: &GroupReport,
    sources: GroupSources<'_>,
    input: &ViewInput<'_>,
    now: SystemTime,
) -> Group {
    let GroupSources {
        members,
        history,
        active,
        last_finished,
        previous,
    } = sources;
    let observed_hashes = observed_hashes(report);
    let instances: Box<[GroupInstance]> = members
        .iter()
        .map(|i| GroupInstance {
            id: i.id.clone(),
            spec_hash: i
                .tags
                .get_text(tags::SPEC_HASH)
                .and_then(|tag| instance_hash(tag, &observed_hashes)),
            state: i.state,
            health: i.health,
            commit: i.tags.get_text(tags::COMMIT).cloned(),
            traffic: crate::traffic::instance_traffic(input.traffic, report, i.id.as_str()),
        })
        .collect();
    let drift = report
        .drift
        .iter()
        .map(|f| DriftFinding {
            kind: f.kind,
            instance_id: f.instance_id.clone(),
            field: f.field.map(|x| x.as_str().to_string()),
            expected: f.expected.clone(),
            observed: f.observed.clone(),
            since: input
                .since
                .get(&finding_key(report.name.as_str(), f))
                .copied()
                .unwrap_or(now),
        })
        .collect::<Vec<_>>();
    let sync = match report.status {
        GroupStatus::Suspended => SyncState::Suspended,
        _ if active.is_some() => SyncState::Progressing,
        GroupStatus::InSync => SyncState::InSync,
        _ if matches!(
            last_finished.map(|p| p.status),
            Some(PlanStatus::Failed | PlanStatus::RolledBack)
        ) && last_finished.map(|p| p.kind.target_hash()) == Some(report.desired_hash) =>
        {
            SyncState::Failed
        }
        _ => SyncState::Drifted,
    };
    let health = if instances.is_empty() {
        GroupHealth::Unknown
    } else if instances
        .iter()
        .all(|i| i.health == InstanceHealth::Healthy)
        && instances.len() >= report.replicas.unwrap_or(0) as usize
    {
        GroupHealth::Healthy
    } else {
        GroupHealth::Degraded
    };
    Group {
        summary: GroupSummary {
            name: report.name.text().clone(),
            desired_hash: report
                .desired_hash
                .map(|hash| desired_text(hash, &observed_hashes, previous)),
            replicas: report.replicas.unwrap_or(0),
            sync,
            health,
            instances,
            observed_hashes,
            drift: drift.into_boxed_slice(),
            target_groups: crate::traffic::group_target_groups(input.traffic, report),
            operation: active.map(|p| {
                Box::new(Operation {
                    plan_id: p.plan.id.to_string(),
                    phase: plan_state(p.plan.status),
                })
            }),
        },
        history,
    }
}

/// The group's observed hashes that parse (`(none)` does not), sharing the report's
/// texts (which are the instances' tags), exactly sized (collected from the filter alone,
/// a one-hash list would get room for four).
fn observed_hashes(report: &GroupReport) -> Box<[ObservedHash]> {
    let mut hashes = Vec::with_capacity(report.observed_hashes.len());
    hashes.extend(report.observed_hashes.iter().filter_map(|h| {
        HashText::new(&h.hash).map(|spec_hash| ObservedHash {
            spec_hash,
            count: h.count as usize,
        })
    }));
    hashes.into_boxed_slice()
}

/// The desired hash as text: the observed hash's (the instances' tag) when instances run
/// it, else the previous snapshot's text for the group, else a text of its own, so a
/// desired hash no instance carries yet gets its text once, not once per pass.
fn desired_text(hash: SpecHash, observed: &[ObservedHash], previous: Option<&Group>) -> HashText {
    observed
        .iter()
        .map(|h| &h.spec_hash)
        .chain(previous.and_then(|g| g.summary.desired_hash.as_ref()))
        .find(|text| **text == hash)
        .cloned()
        .unwrap_or_else(|| HashText::from(hash))
}

/// An instance's `phoenix:spec-hash` tag as a hash: the group's observed hash of the same
/// text when there is one (each checked once per group, not once per instance), else the
/// tag itself if it parses.
fn instance_hash(tag: &Text, observed: &[ObservedHash]) -> Option<HashText> {
    match observed.iter().find(|h| h.spec_hash.text() == tag) {
        Some(h) => Some(h.spec_hash.clone()),
        None => HashText::new(tag),
    }
}

fn history_outcome(outcome: GenerationOutcome) -> HistoryOutcome {
    match outcome {
        GenerationOutcome::Progressing => HistoryOutcome::Progressing,
        GenerationOutcome::Succeeded => HistoryOutcome::Succeeded,
        GenerationOutcome::Failed => HistoryOutcome::Failed,
        GenerationOutcome::RolledBack => HistoryOutcome::RolledBack,
        GenerationOutcome::Superseded => HistoryOutcome::Superseded,
    }
}

/// The API's name for a store plan status.
pub fn plan_state(status: PlanStatus) -> PlanState {
    match status {
        PlanStatus::Pending => PlanState::Pending,
        PlanStatus::AwaitingApproval => PlanState::AwaitingApproval,
        PlanStatus::Running => PlanState::Running,
        PlanStatus::Succeeded => PlanState::Succeeded,
        PlanStatus::Failed => PlanState::Failed,
        PlanStatus::RolledBack => PlanState::RolledBack,
        PlanStatus::Cancelled | PlanStatus::Superseded => PlanState::Cancelled,
    }
}

/// The API's name for a store step status.
pub fn step_state(status: StepStatus) -> StepState {
    match status {
        StepStatus::Pending => StepState::Pending,
        StepStatus::Intent => StepState::Running,
        StepStatus::Done => StepState::Succeeded,
        StepStatus::Failed => StepState::Failed,
    }
}

fn plan_view(p: &PlanWithSteps) -> Plan {
    let record = &p.plan;
    Plan {
        id: record.id.to_string(),
        group: record.group.to_string(),
        kind: match record.kind {
            phoenix_store::PlanKind::Rollout { .. } => PlanKind::Rollout,
            phoenix_store::PlanKind::Prune => PlanKind::Prune,
        },
        target_hash: record.kind.target_hash(),
        revision: Some(record.commit.clone()),
        strategy: record
            .kind
            .strategy()
            .map(|s| format!("{s:?}").to_lowercase()),
        state: plan_state(record.status),
        requires_approval: record.status == PlanStatus::AwaitingApproval,
        created_at: record.created_at,
        updated_at: record.updated_at,
        steps: p
            .steps
            .iter()
            .map(|s| {
                let (count, instance_ids) = crate::executor::step_summary(&s.detail);
                PlanStep {
                    index: s.index,
                    action: s.action.to_string(),
                    state: step_state(s.status),
                    count,
                    instance_ids,
                    started_at: s.started_at,
                    finished_at: s.finished_at,
                    message: s.error.clone(),
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use phoenix_core::{GroupName, SpecHash};
    use phoenix_store::StoreOptions;

    use super::*;

    fn hash(n: u64) -> SpecHash {
        format!("v1:sha256:{n:064x}")
            .parse()
            .expect("64 hex digits make a valid hash")
    }

    fn group(name: &str) -> GroupName {
        GroupName::new(name).expect("a valid group name")
    }

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn json(entries: &[HistoryEntry]) -> String {
        serde_json::to_string(entries).expect("history serialises")
    }

    fn store(keep: usize) -> Store {
        Store::open_in_memory(StoreOptions {
            history_keep: keep,
            ..StoreOptions::default()
        })
        .expect("an in-memory store")
    }

    #[test]
    fn changed_groups_read_alone_match_a_whole_read_and_share_lists_and_commits() {
        let mut store = store(20);
        let mut cached = Histories::default();
        cached.refresh(&mut store);
        assert!(cached.get("web").is_empty());
        store
            .record_generation(&group("web"), &hash(1), "c1", t(0))
            .expect("record");
        store
            .record_generation(&group("web"), &hash(2), "c2", t(60))
            .expect("record");
        store
            .set_generation_outcome(&group("web"), &hash(1), GenerationOutcome::Superseded)
            .expect("outcome");
        store
            .record_generation(&group("db"), &hash(3), "c2", t(60))
            .expect("record");
        cached.refresh(&mut store);

        let mut whole = Histories::default();
        whole.refresh(&mut store);
        for name in ["web", "db", "nope"] {
            assert_eq!(json(&cached.get(name)), json(&whole.get(name)), "{name}");
        }
        let web = cached.get("web");
        let outcomes: Vec<&str> = web.iter().map(|h| h.outcome.as_str()).collect();
        assert_eq!(outcomes, ["progressing", "superseded"], "newest first");
        // What a snapshot gets is the cache's list, not a copy; one commit is kept once.
        assert!(Arc::ptr_eq(&web, &cached.get("web")));
        let db = cached.get("db");
        let (web_c2, db_c2) = (web[0].commit.as_ref(), db[0].commit.as_ref());
        assert!(web_c2.expect("a commit").shares(db_c2.expect("a commit")));
        assert_eq!(cached.commits.len(), 2);
    }

    #[test]
    fn commits_no_entry_names_are_forgotten() {
        let mut store = store(1);
        let mut cached = Histories::default();
        cached.refresh(&mut store);
        store
            .record_generation(&group("web"), &hash(1), "c1", t(0))
            .expect("record");
        cached.refresh(&mut store);
        store
            .record_generation(&group("web"), &hash(2), "c2", t(60))
            .expect("record");
        cached.refresh(&mut store);
        let commits: Vec<&str> = cached.commits.iter().map(|c| &**c).collect();
        assert_eq!(commits, ["c2"]);
        assert_eq!(cached.get("web").len(), 1);
    }

    fn document(replicas_of_b: u32) -> PlanDocument {
        let report = |name: &str, replicas: u32| {
            serde_json::json!({
                "name": name,
                "provider": "sim",
                "desired_hash": hash(1).to_string(),
                "replicas": replicas,
                "status": "in_sync",
                "observed_hashes": [{"hash": hash(1).to_string(), "count": replicas}],
                "drift": [],
            })
        };
        serde_json::from_value(serde_json::json!({
            "format_version": "1.0",
            "revision": "c1",
            "changes": false,
            "drifted": false,
            "budget": {"limit": 10, "used": 0, "deferred": 0, "fleet": 0},
            "groups": [report("a", 3), report("b", replicas_of_b)],
        }))
        .expect("a plan document")
    }

    #[test]
    fn a_snapshot_reuses_the_previous_snapshots_unchanged_groups() {
        let store = store(20);
        let histories = Histories::default();
        let since = HashMap::new();
        let windows = crate::windows::LoopWindows::default();
        let input = |document, previous| ViewInput {
            ready: true,
            revision: Some(("c1", t(0))),
            rejection: None,
            signature: None,
            source_error: None,
            inventories: &[],
            traffic: &phoenix_core::traffic::NO_TRAFFIC,
            document: Some(document),
            since: &since,
            alerts: AlertCounts::default(),
            previous,
            windows: &windows,
        };
        let first_doc = document(3);
        let first = build(&store, &input(&first_doc, None), &histories, t(10));
        let second_doc = document(5);
        let second = build(
            &store,
            &input(&second_doc, Some(&*first)),
            &histories,
            t(20),
        );
        let shared = |name: &str| {
            Arc::ptr_eq(
                first.shared_group(name).expect("in the first snapshot"),
                second.shared_group(name).expect("in the second snapshot"),
            )
        };
        assert!(
            shared("a"),
            "an unchanged group is the previous snapshot's copy"
        );
        assert!(!shared("b"), "a changed group is built anew");
        assert_eq!(second.group("b").map(|g| g.summary.replicas), Some(5));
        assert_eq!(first.group("b").map(|g| g.summary.replicas), Some(3));
        // Without a previous snapshot nothing is shared, and the content is the same.
        let alone = build(&store, &input(&second_doc, None), &histories, t(20));
        assert_eq!(alone.groups(), second.groups());
    }

    #[test]
    fn a_desired_hash_shares_the_instances_text_or_the_previous_snapshots() {
        let store = store(20);
        let doc = document(3);
        let since = HashMap::new();
        let windows = crate::windows::LoopWindows::default();
        let input = ViewInput {
            ready: true,
            revision: Some(("c1", t(0))),
            rejection: None,
            signature: None,
            source_error: None,
            inventories: &[],
            traffic: &phoenix_core::traffic::NO_TRAFFIC,
            document: Some(&doc),
            since: &since,
            alerts: AlertCounts::default(),
            previous: None,
            windows: &windows,
        };
        let snapshot = build(&store, &input, &Histories::default(), t(10));
        let a = snapshot.group("a").expect("group a");
        let desired = a.summary.desired_hash.as_ref().expect("a desired hash");
        assert!(
            desired
                .text()
                .shares(&doc.groups[0].observed_hashes[0].hash)
        );
        // No instance carries it: the previous snapshot's text, else a new one.
        assert!(
            desired_text(hash(1), &[], Some(a))
                .text()
                .shares(desired.text())
        );
        let own = desired_text(hash(2), &a.summary.observed_hashes, Some(a));
        assert_eq!(own, hash(2));
    }
}
