//! The immutable `Snapshot` the daemon loop publishes, and every JSON wire type the read
//! endpoints serve (design section 9).
//!
//! The loop builds a [`Snapshot`] from [`SnapshotParts`] once per change and publishes it
//! as `Arc<Snapshot>` on a `tokio::sync::watch` channel. Construction sorts the groups for
//! binary-search lookup and pre-serialises the `GET /api/v1/status` body except the
//! per-provider inventory ages, which are computed at request time. The larger list
//! bodies (`/groups`, `/drift`, `/plans`) are serialised lazily, at most once per
//! snapshot, so a snapshot nobody reads costs almost nothing. Groups are held as
//! `Arc<Group>` so consecutive snapshots can share the groups that did not change.

use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use axum::body::Bytes;
use phoenix_core::drift::DriftKind;
use phoenix_core::hash::V1_PREFIX;
use phoenix_core::model::{InstanceHealth, InstanceState};
use phoenix_core::{SpecHash, Text};
use serde::{Serialize, Serializer};
use utoipa::ToSchema;

/// Serialises a `SystemTime` as RFC 3339 (UTC, whole seconds; `phoenix_core::time`).
pub(crate) fn rfc3339<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&phoenix_core::time::display_rfc3339(*time))
}

/// Serialises an optional `SystemTime` as RFC 3339 or `null`.
pub(crate) fn rfc3339_opt<S: Serializer>(
    time: &Option<SystemTime>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

/// Serialises a shared list as a JSON array, exactly as a `Vec` of it would be (serde's
/// `rc` feature is off in this workspace).
fn shared_slice<S: Serializer, T: Serialize>(items: &Arc<[T]>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(items.iter())
}

/// The desired-state revision: the last accepted one, and why the newest was rejected.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Revision {
    /// Commit id, or the content hash of a folder source; `null` before the first
    /// accepted revision.
    pub id: Option<String>,
    /// When `id` was accepted.
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub accepted_at: Option<SystemTime>,
    /// Set while the newest revision is rejected; `id` then stays the last good one.
    pub error: Option<RevisionError>,
    /// Who signed the applied commit (`source.git.verify`), or `null`.
    pub signature: Option<RevisionSignature>,
}

/// The verified signature of the applied commit (design section 12).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RevisionSignature {
    /// `ssh` or `openpgp`.
    pub kind: String,
    /// The key's fingerprint (`SHA256:...` for SSH, 40 hex digits for OpenPGP).
    pub key: String,
    /// The allowed-signers principal, or the OpenPGP user id.
    pub signer: String,
}

/// Why the newest revision was rejected, pointing at the offending file.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RevisionError {
    /// The rejected revision's id.
    pub revision: String,
    /// The commit to blame when a signature check rejected the revision (`null`
    /// otherwise); `path`, `line` and `column` are then `null`.
    pub commit: Option<String>,
    /// Path of the offending file inside the source, e.g. `groups/web.yaml`; `null` when
    /// no file is to blame.
    pub path: Option<String>,
    /// 1-based line, when known.
    pub line: Option<u32>,
    /// 1-based column, when known.
    pub column: Option<u32>,
    /// What is wrong.
    pub message: String,
}

/// Counts of groups by sync state, computed from the groups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct GroupCounts {
    /// All groups.
    pub total: usize,
    /// `sync == in_sync`.
    pub in_sync: usize,
    /// `sync == drifted`.
    pub drifted: usize,
    /// `sync == progressing`.
    pub progressing: usize,
    /// `sync == failed`.
    pub failed: usize,
    /// `sync == suspended`.
    pub suspended: usize,
}

/// The last inventory pass of one provider, as the loop records it.
#[derive(Debug, Clone)]
pub struct ProviderInventory {
    /// Provider name from the config.
    pub provider: String,
    /// Whether the pass hit no error.
    pub complete: bool,
    /// When the pass finished; `None` before the first pass.
    pub collected_at: Option<SystemTime>,
    /// Instances carrying our owner tag.
    pub instances: usize,
}

/// The wire form of [`ProviderInventory`], with the age computed at request time.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InventoryStatus {
    /// Provider name from the config.
    pub provider: String,
    /// Whether the last pass hit no error (an incomplete pass never makes anything missing).
    pub complete: bool,
    /// When the last pass finished (RFC 3339), `null` before the first pass.
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub collected_at: Option<SystemTime>,
    /// Seconds since `collected_at`, at the time of the request.
    pub age_seconds: Option<u64>,
    /// Instances carrying our owner tag.
    pub instances: usize,
}

impl ProviderInventory {
    /// The wire form as of `now`.
    pub fn status_at(&self, now: SystemTime) -> InventoryStatus {
        InventoryStatus {
            provider: self.provider.clone(),
            complete: self.complete,
            collected_at: self.collected_at,
            age_seconds: self
                .collected_at
                .map(|t| now.duration_since(t).map(|d| d.as_secs()).unwrap_or(0)),
            instances: self.instances,
        }
    }
}

/// Counts of plans that need attention, computed from the plans.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct PlanCounts {
    /// Plans executing now.
    pub running: usize,
    /// Plans waiting for `POST /api/v1/plans/{id}/approve`.
    pub awaiting_approval: usize,
}

/// Alert delivery state (the outbox).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct AlertCounts {
    /// Deliveries waiting in the outbox (including retries).
    pub pending: usize,
    /// Deliveries that gave up.
    pub failed: usize,
}

/// Change windows in `GET /api/v1/status` (design section 14).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct WindowsStatus {
    /// Groups that may not start replacements or prunes now.
    pub blocked_groups: usize,
    /// The next instant a window opens or closes or the override in force ends (RFC
    /// 3339), `null` when none comes within a year.
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_change: Option<SystemTime>,
    /// The operator's override in force (`POST /api/v1/windows/override`), or `null`.
    #[serde(rename = "override")]
    pub lifted: Option<OverrideStatus>,
}

/// An override in force: every window is lifted until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct OverrideStatus {
    /// Every window is lifted before this instant.
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub until: SystemTime,
    /// Why, as the operator wrote it.
    pub reason: String,
    /// Who asked for it.
    pub by: String,
    /// When it was made.
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: SystemTime,
}

/// A group's change-window standing in `GET /api/v1/groups/{name}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct GroupWindow {
    /// The group may not start replacements or prunes now.
    pub blocked: bool,
    /// When blocked: when it stops being blocked (RFC 3339), `null` when not blocked or
    /// not within a year.
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub until: Option<SystemTime>,
}

/// A blocked group and when it stops being blocked, as the snapshot keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockedGroup {
    /// The group's name.
    pub name: Text,
    /// When it stops being blocked, if within a year.
    pub until: Option<Seconds>,
}

/// The change windows as the loop evaluated them for a snapshot: the status fields, and
/// the blocked groups only (most groups are not blocked most of the time, and a window
/// boundary changes no [`Group`], so unchanged groups stay shared between snapshots).
#[derive(Debug, Clone, Default)]
pub struct WindowsView {
    /// What `GET /api/v1/status` shows.
    pub status: WindowsStatus,
    /// The blocked groups, any order (the snapshot sorts them by name).
    pub blocked: Vec<BlockedGroup>,
}

/// The body of `GET /api/v1/status` (documentation schema; the server assembles it from
/// pre-serialised parts).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Status {
    /// True after the first complete reconcile pass (`/readyz`).
    pub ready: bool,
    /// Desired-state revision.
    pub revision: Revision,
    /// Group counts by sync state.
    pub groups: GroupCounts,
    /// Inventory per provider.
    pub inventory: Vec<InventoryStatus>,
    /// Plan counts.
    pub plans: PlanCounts,
    /// Alert delivery state.
    pub alerts: AlertCounts,
    /// Change windows.
    pub windows: WindowsStatus,
}

/// Whether a group's fleet matches Git.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    /// Every instance runs the desired hash, no open drift.
    InSync,
    /// Open drift, no plan running.
    Drifted,
    /// A plan is running or awaiting approval.
    Progressing,
    /// The last plan failed or rolled back.
    Failed,
    /// Reconciliation is suspended for the group.
    Suspended,
}

impl SyncState {
    /// Every state, in display order.
    pub const ALL: [SyncState; 5] = [
        SyncState::InSync,
        SyncState::Drifted,
        SyncState::Progressing,
        SyncState::Failed,
        SyncState::Suspended,
    ];

    /// The snake_case wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::InSync => "in_sync",
            SyncState::Drifted => "drifted",
            SyncState::Progressing => "progressing",
            SyncState::Failed => "failed",
            SyncState::Suspended => "suspended",
        }
    }
}

/// A group's aggregated health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupHealth {
    /// All current instances healthy.
    Healthy,
    /// Some instances unhealthy or missing.
    Degraded,
    /// No verdict (no instances, or inventory incomplete).
    Unknown,
}

impl GroupHealth {
    /// Every state, in display order.
    pub const ALL: [GroupHealth; 3] = [
        GroupHealth::Healthy,
        GroupHealth::Degraded,
        GroupHealth::Unknown,
    ];

    /// The snake_case wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupHealth::Healthy => "healthy",
            GroupHealth::Degraded => "degraded",
            GroupHealth::Unknown => "unknown",
        }
    }
}

/// A spec hash held as the shared text of the `phoenix:spec-hash` tag it was read from:
/// one word, and no copy of the tag, where a [`SpecHash`] is 32 bytes inline. A snapshot
/// holds one per instance (300,000 at the largest fleets), all of a group's instances
/// naming the same one text.
///
/// Only text that parses as a [`SpecHash`] is accepted, and such text is exactly the
/// hash's canonical form (`v1:sha256:` and 64 lowercase hex digits), so it serialises to
/// the same JSON string as the parsed hash.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct HashText(Text);

impl HashText {
    /// The hash `text` holds, sharing it; `None` if it is not a spec hash.
    pub fn new(text: &Text) -> Option<HashText> {
        text.parse::<SpecHash>()
            .ok()
            .map(|_| HashText(text.clone()))
    }

    /// The hash's text, e.g. `v1:sha256:9f86d0…`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The shared text.
    pub fn text(&self) -> &Text {
        &self.0
    }

    /// The parsed hash.
    pub fn spec_hash(&self) -> SpecHash {
        self.0
            .parse()
            .expect("a HashText holds only text that parses as a spec hash")
    }
}

impl From<SpecHash> for HashText {
    /// The hash's canonical text, in a text of its own.
    fn from(hash: SpecHash) -> Self {
        HashText(Text::from(hash.to_string()))
    }
}

impl PartialEq<SpecHash> for HashText {
    /// Compares the text with the hash's, without parsing or allocating.
    fn eq(&self, other: &SpecHash) -> bool {
        let mut digest = [0u8; 64];
        hex::encode_to_slice(other.digest(), &mut digest)
            .expect("a 32-byte digest is 64 hex digits");
        self.0.strip_prefix(V1_PREFIX).map(str::as_bytes) == Some(&digest[..])
    }
}

impl std::fmt::Debug for HashText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HashText({})", self.0)
    }
}

impl std::fmt::Display for HashText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for HashText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// One running instance of a group.
// (Plain comments: doc comments would change the OpenAPI document.) A snapshot holds
// one per instance, so every field is one word or less: the id, hash and commit share the
// inventory's tag texts.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct GroupInstance {
    /// Provider instance id, e.g. `i-0abc`. Shared with the inventory it came from.
    #[schema(value_type = String)]
    pub id: Text,
    /// The `phoenix:spec-hash` tag; `null` if the tag is missing or unreadable.
    #[schema(value_type = Option<String>, example = "v1:sha256:9f86d081884c7d65...")]
    pub spec_hash: Option<HashText>,
    /// Provider lifecycle state (`pending`, `running`, `stopping`).
    #[schema(value_type = String, example = "running")]
    pub state: InstanceState,
    /// Health verdict (`healthy`, `unhealthy`, `unknown`).
    #[schema(value_type = String, example = "healthy")]
    pub health: InstanceHealth,
    /// The commit the instance was launched from (its tag), when known. Shared with the
    /// inventory it came from.
    #[schema(value_type = Option<String>)]
    pub commit: Option<Text>,
    /// Its state in each target group of the group's `spec.traffic` that could be read
    /// this pass; absent for groups without traffic. (A thin box: one word, null for
    /// the groups without traffic.)
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<InstanceTraffic>>)]
    pub traffic: Option<Box<Vec<InstanceTraffic>>>,
}

/// An instance's state in one target group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct InstanceTraffic {
    /// The target group (ARN, or the sim's name).
    pub target_group: String,
    /// `initial`, `healthy`, `unhealthy`, `draining`, `unused` or `unavailable`.
    #[schema(value_type = String, example = "healthy")]
    pub state: phoenix_core::traffic::TargetState,
}

impl GroupInstance {
    /// Whether the instance is `healthy` in every target group shown (false without
    /// traffic).
    pub fn in_service(&self) -> bool {
        self.traffic.as_deref().is_some_and(|t| {
            !t.is_empty()
                && t.iter()
                    .all(|x| x.state == phoenix_core::traffic::TargetState::Healthy)
        })
    }
}

/// How many instances carry one spec hash.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ObservedHash {
    /// The observed spec hash.
    #[schema(value_type = String)]
    pub spec_hash: HashText,
    /// Instances carrying it.
    pub count: usize,
}

/// One open drift finding.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DriftFinding {
    /// `outdated`, `modified`, `missing`, `surplus`, `unhealthy`, `orphaned`, `unmanaged`.
    #[schema(value_type = String, example = "modified")]
    pub kind: DriftKind,
    /// The instance concerned; `null` for count findings (`missing`).
    pub instance_id: Option<String>,
    /// The attribute that differs (`modified`), e.g. `instanceType`.
    pub field: Option<String>,
    /// What the template says.
    pub expected: Option<String>,
    /// What the provider reports.
    pub observed: Option<String>,
    /// When the finding was first seen.
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub since: SystemTime,
}

/// The plan currently acting on a group.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Operation {
    /// The plan's id.
    pub plan_id: String,
    /// The plan's state, e.g. `running` or `awaiting_approval`.
    pub phase: PlanState,
}

/// A time to the whole second, as the API shows every time: one word where a
/// `SystemTime` is two. For the times kept per group and generation (the history cache
/// keeps up to the store's `history_keep` entries for each of 100,000 groups). Times before
/// the Unix epoch, which Phoenix never records, are the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seconds(u64);

impl From<SystemTime> for Seconds {
    /// The time to the second below it.
    fn from(time: SystemTime) -> Self {
        Seconds(
            time.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        )
    }
}

impl From<Seconds> for SystemTime {
    fn from(time: Seconds) -> Self {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(time.0)
    }
}

impl Serialize for Seconds {
    /// RFC 3339 (UTC, whole seconds), as [`rfc3339`] writes a `SystemTime`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        rfc3339(&SystemTime::from(*self), s)
    }
}

/// How a generation ended up, as the history shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryOutcome {
    /// The newest generation, still rolling out or running.
    Progressing,
    /// Rolled out.
    Succeeded,
    /// Its rollout failed.
    Failed,
    /// Its rollout failed and was rolled back.
    RolledBack,
    /// A newer generation replaced it.
    Superseded,
}

impl HistoryOutcome {
    /// The snake_case wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryOutcome::Progressing => "progressing",
            HistoryOutcome::Succeeded => "succeeded",
            HistoryOutcome::Failed => "failed",
            HistoryOutcome::RolledBack => "rolled_back",
            HistoryOutcome::Superseded => "superseded",
        }
    }
}

/// One generation a group has run.
// (Plain comments here and below: doc comments would change the OpenAPI document.)
// Kept once per group by the daemon's history cache and shared by every snapshot (see
// `Group::history`), up to `history_keep` of them per group, so it is small: the commit
// is a text shared by the entries of the same commit, the times are whole seconds (all
// the wire shows) and the outcome is a byte.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HistoryEntry {
    /// The generation's spec hash.
    #[schema(value_type = String)]
    pub spec_hash: SpecHash,
    /// The commit it came from.
    #[schema(value_type = Option<String>)]
    pub commit: Option<Text>,
    /// First observed.
    #[schema(value_type = String, format = DateTime)]
    pub first_seen: Seconds,
    /// Last observed.
    #[schema(value_type = String, format = DateTime)]
    pub last_seen: Seconds,
    /// `succeeded`, `failed`, `rolled_back`, `superseded`, `current`, ...
    #[schema(value_type = String)]
    pub outcome: HistoryOutcome,
}

/// A group as `GET /api/v1/groups` lists it (everything except the history).
// A snapshot holds one per group (100,000 at the largest fleets), so the name is the
// group name's shared text, the desired hash a shared text too (the instances' tag when
// they run it), the lists (never grown after building) are boxed slices and the rarely
// present operation and target groups are boxed: with the history a `Group` is 104 bytes.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct GroupSummary {
    /// `metadata.name`.
    #[schema(value_type = String)]
    pub name: Text,
    /// The hash Git asks for; `null` for a group that is gone from Git (orphaned).
    #[schema(value_type = Option<String>, example = "v1:sha256:9f86d081884c7d65...")]
    pub desired_hash: Option<HashText>,
    /// Desired instance count.
    pub replicas: u32,
    /// Sync state.
    pub sync: SyncState,
    /// Aggregated health.
    pub health: GroupHealth,
    /// Running instances.
    #[schema(value_type = Vec<GroupInstance>)]
    pub instances: Box<[GroupInstance]>,
    /// Observed hashes with instance counts.
    #[schema(value_type = Vec<ObservedHash>)]
    pub observed_hashes: Box<[ObservedHash]>,
    /// Open drift findings.
    #[schema(value_type = Vec<DriftFinding>)]
    pub drift: Box<[DriftFinding]>,
    /// The plan acting on the group, if any.
    #[schema(value_type = Option<Operation>)]
    pub operation: Option<Box<Operation>>,
    /// The target groups of the group's `spec.traffic`; absent without traffic. (A thin
    /// box: one word, null for the groups without traffic.)
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub target_groups: Option<Box<Vec<String>>>,
}

/// A group with its history, as `GET /api/v1/groups/{name}` serves it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Group {
    /// Everything the list shows.
    #[serde(flatten)]
    pub summary: GroupSummary,
    /// Generations seen, newest first.
    // Shared with the daemon's history cache, and so by every snapshot until the group's
    // history changes.
    #[serde(serialize_with = "shared_slice")]
    #[schema(value_type = Vec<HistoryEntry>)]
    pub history: Arc<[HistoryEntry]>,
}

/// `GET /api/v1/groups/{name}`: the group with its history and its change-window
/// standing.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GroupDetail<'a> {
    /// The group.
    #[serde(flatten)]
    pub group: &'a Group,
    /// Whether a change window blocks the group's replacements and prunes now.
    pub window: GroupWindow,
}

/// The state of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlanState {
    /// Created, not started.
    Pending,
    /// Waiting for `POST /api/v1/plans/{id}/approve`.
    AwaitingApproval,
    /// Executing.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Failed.
    Failed,
    /// Failed and rolled back.
    RolledBack,
    /// Cancelled by an operator or superseded.
    Cancelled,
}

impl PlanState {
    /// Every state, in display order.
    pub const ALL: [PlanState; 7] = [
        PlanState::Pending,
        PlanState::AwaitingApproval,
        PlanState::Running,
        PlanState::Succeeded,
        PlanState::Failed,
        PlanState::RolledBack,
        PlanState::Cancelled,
    ];

    /// The snake_case wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PlanState::Pending => "pending",
            PlanState::AwaitingApproval => "awaiting_approval",
            PlanState::Running => "running",
            PlanState::Succeeded => "succeeded",
            PlanState::Failed => "failed",
            PlanState::RolledBack => "rolled_back",
            PlanState::Cancelled => "cancelled",
        }
    }
}

/// The state of one plan step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Not started.
    Pending,
    /// Executing.
    Running,
    /// Done.
    Succeeded,
    /// Failed.
    Failed,
    /// Not executed (plan cancelled or failed earlier).
    Skipped,
}

/// One step of a plan.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlanStep {
    /// 0-based position in the plan.
    pub index: u32,
    /// `launch`, `wait_healthy`, `bake`, `terminate`, ...
    pub action: String,
    /// Step state.
    pub state: StepState,
    /// Instance count for `launch`.
    pub count: Option<u32>,
    /// Instances the step acts on or created.
    pub instance_ids: Vec<String>,
    /// When the step started.
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<SystemTime>,
    /// When the step finished.
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<SystemTime>,
    /// Error or progress detail.
    pub message: Option<String>,
}

/// What a plan does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlanKind {
    /// Converge a desired group to its target hash.
    Rollout,
    /// Terminate instances of a group that is no longer in the desired state
    /// (`reconcile.prune: true`).
    Prune,
}

/// A plan and its steps.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Plan {
    /// Plan id.
    pub id: String,
    /// The group it belongs to.
    pub group: String,
    /// `rollout` (converge a desired group to `target_hash`) or `prune` (terminate the
    /// named instances of a group that is no longer in the desired state).
    pub kind: PlanKind,
    /// The hash it moves the group to; `null` for a prune plan, which converges to no
    /// spec.
    #[schema(value_type = Option<String>)]
    pub target_hash: Option<SpecHash>,
    /// The revision it was planned from.
    pub revision: Option<String>,
    /// `rolling`, `blue_green`, `canary`; `null` for a prune plan.
    pub strategy: Option<String>,
    /// Plan state.
    pub state: PlanState,
    /// Whether the plan needs (or needed) manual approval.
    pub requires_approval: bool,
    /// When the plan was created.
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: SystemTime,
    /// Last state change.
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: SystemTime,
    /// Steps in order.
    pub steps: Vec<PlanStep>,
}

/// A drift finding with its group, as `GET /api/v1/drift` lists it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GroupDriftFinding<'a> {
    /// The group the finding belongs to.
    pub group: &'a str,
    /// The finding.
    #[serde(flatten)]
    pub finding: &'a DriftFinding,
}

/// What the loop hands to [`Snapshot::new`].
#[derive(Debug, Clone, Default)]
pub struct SnapshotParts {
    /// True after the first complete reconcile pass.
    pub ready: bool,
    /// Desired-state revision.
    pub revision: Revision,
    /// The last inventory pass per provider.
    pub inventory: Vec<ProviderInventory>,
    /// Every group (any order; the snapshot sorts by name). Shared: a group that did not
    /// change since the previous snapshot can be that snapshot's own copy, so a publish
    /// does not hold two whole sets of groups (see [`Snapshot::shared_group`]).
    pub groups: Vec<Arc<Group>>,
    /// Plans, newest first (the snapshot keeps the given order).
    pub plans: Vec<Plan>,
    /// Alert delivery state.
    pub alerts: AlertCounts,
    /// Change windows.
    pub windows: WindowsView,
}

/// An immutable view of the daemon state, published by the loop, read by the handlers.
#[derive(Debug)]
pub struct Snapshot {
    parts: SnapshotParts,
    group_counts: GroupCounts,
    plan_counts: PlanCounts,
    /// `{"ready":..,"revision":..,"groups":..,"inventory":` — the part before the inventory.
    status_head: Bytes,
    /// `,"plans":..,"alerts":..,"windows":..}` — the part after the inventory.
    status_tail: Bytes,
    groups_body: OnceLock<Bytes>,
    drift_body: OnceLock<Bytes>,
    plans_body: OnceLock<Bytes>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot::new(SnapshotParts::default())
    }
}

fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Bytes {
    // Wire types hold only strings, numbers, bools and times: serialisation cannot fail.
    let mut body = serde_json::to_vec(value).expect("wire types always serialise to JSON");
    // The buffer grew by doubling; a body kept for the snapshot's life keeps only its
    // length (the `/groups` body at 100k groups is ~93 MB, with ~40 MB spare before).
    body.shrink_to_fit();
    Bytes::from(body)
}

impl Snapshot {
    /// Builds a snapshot: sorts groups, computes counts, pre-serialises the status body.
    pub fn new(mut parts: SnapshotParts) -> Snapshot {
        parts
            .groups
            .sort_unstable_by(|a, b| a.summary.name.cmp(&b.summary.name));
        let mut group_counts = GroupCounts {
            total: parts.groups.len(),
            ..GroupCounts::default()
        };
        for group in &parts.groups {
            match group.summary.sync {
                SyncState::InSync => group_counts.in_sync += 1,
                SyncState::Drifted => group_counts.drifted += 1,
                SyncState::Progressing => group_counts.progressing += 1,
                SyncState::Failed => group_counts.failed += 1,
                SyncState::Suspended => group_counts.suspended += 1,
            }
        }
        parts
            .windows
            .blocked
            .sort_unstable_by(|a, b| a.name.cmp(&b.name));
        let mut plan_counts = PlanCounts::default();
        for plan in &parts.plans {
            match plan.state {
                PlanState::Running => plan_counts.running += 1,
                PlanState::AwaitingApproval => plan_counts.awaiting_approval += 1,
                _ => {}
            }
        }

        #[derive(Serialize)]
        struct Head<'a> {
            ready: bool,
            revision: &'a Revision,
            groups: &'a GroupCounts,
        }
        #[derive(Serialize)]
        struct Tail<'a> {
            plans: &'a PlanCounts,
            alerts: &'a AlertCounts,
            windows: &'a WindowsStatus,
        }
        let mut head = serde_json::to_vec(&Head {
            ready: parts.ready,
            revision: &parts.revision,
            groups: &group_counts,
        })
        .expect("wire types always serialise to JSON");
        // Replace the closing brace with the start of the inventory member.
        head.pop();
        head.extend_from_slice(b",\"inventory\":");
        let mut tail = serde_json::to_vec(&Tail {
            plans: &plan_counts,
            alerts: &parts.alerts,
            windows: &parts.windows.status,
        })
        .expect("wire types always serialise to JSON");
        tail[0] = b',';

        Snapshot {
            parts,
            group_counts,
            plan_counts,
            status_head: Bytes::from(head),
            status_tail: Bytes::from(tail),
            groups_body: OnceLock::new(),
            drift_body: OnceLock::new(),
            plans_body: OnceLock::new(),
        }
    }

    /// True after the first complete reconcile pass.
    pub fn ready(&self) -> bool {
        self.parts.ready
    }

    /// The revision.
    pub fn revision(&self) -> &Revision {
        &self.parts.revision
    }

    /// Groups, sorted by name.
    pub fn groups(&self) -> &[Arc<Group>] {
        &self.parts.groups
    }

    /// One group by name.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.shared_group(name).map(|g| &**g)
    }

    /// One group by name, as shared: the next snapshot reuses it when the group is
    /// unchanged.
    pub fn shared_group(&self, name: &str) -> Option<&Arc<Group>> {
        self.parts
            .groups
            .binary_search_by(|g| g.summary.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.parts.groups[i])
    }

    /// Plans in the order the loop gave.
    pub fn plans(&self) -> &[Plan] {
        &self.parts.plans
    }

    /// One plan by id.
    pub fn plan(&self, id: &str) -> Option<&Plan> {
        self.parts.plans.iter().find(|p| p.id == id)
    }

    /// Inventory per provider.
    pub fn inventory(&self) -> &[ProviderInventory] {
        &self.parts.inventory
    }

    /// Alert delivery state.
    pub fn alerts(&self) -> AlertCounts {
        self.parts.alerts
    }

    /// Change windows as of the snapshot's pass.
    pub fn windows(&self) -> &WindowsStatus {
        &self.parts.windows.status
    }

    /// A group's change-window standing as of the snapshot's pass (not blocked for a
    /// name the snapshot does not know).
    pub fn group_window(&self, name: &str) -> GroupWindow {
        self.parts
            .windows
            .blocked
            .binary_search_by(|b| b.name.as_str().cmp(name))
            .ok()
            .map(|i| GroupWindow {
                blocked: true,
                until: self.parts.windows.blocked[i].until.map(SystemTime::from),
            })
            .unwrap_or_default()
    }

    /// One group by name with its window standing, as `GET /api/v1/groups/{name}`
    /// serves it.
    pub fn group_detail(&self, name: &str) -> Option<GroupDetail<'_>> {
        self.group(name).map(|group| GroupDetail {
            group,
            window: self.group_window(name),
        })
    }

    /// Group counts by sync state.
    pub fn group_counts(&self) -> GroupCounts {
        self.group_counts
    }

    /// Plan counts.
    pub fn plan_counts(&self) -> PlanCounts {
        self.plan_counts
    }

    /// Every open drift finding with its group name, groups in name order.
    pub fn drift(&self) -> impl Iterator<Item = GroupDriftFinding<'_>> {
        self.parts.groups.iter().flat_map(|g| {
            g.summary.drift.iter().map(move |f| GroupDriftFinding {
                group: &g.summary.name,
                finding: f,
            })
        })
    }

    /// The `GET /api/v1/status` body as of `now`.
    pub fn status_body(&self, now: SystemTime) -> Vec<u8> {
        let inventory: Vec<InventoryStatus> = self
            .parts
            .inventory
            .iter()
            .map(|p| p.status_at(now))
            .collect();
        let inv = serde_json::to_vec(&inventory).expect("wire types always serialise to JSON");
        let mut body =
            Vec::with_capacity(self.status_head.len() + inv.len() + self.status_tail.len());
        body.extend_from_slice(&self.status_head);
        body.extend_from_slice(&inv);
        body.extend_from_slice(&self.status_tail);
        body
    }

    /// The `GET /api/v1/groups` body, serialised once per snapshot.
    pub fn groups_body(&self) -> Bytes {
        self.groups_body
            .get_or_init(|| {
                #[derive(Serialize)]
                struct Body<'a> {
                    groups: Vec<&'a GroupSummary>,
                }
                to_bytes(&Body {
                    groups: self.parts.groups.iter().map(|g| &g.summary).collect(),
                })
            })
            .clone()
    }

    /// The `GET /api/v1/drift` body, serialised once per snapshot.
    pub fn drift_body(&self) -> Bytes {
        self.drift_body
            .get_or_init(|| {
                #[derive(Serialize)]
                struct Body<'a> {
                    drift: Vec<GroupDriftFinding<'a>>,
                }
                to_bytes(&Body {
                    drift: self.drift().collect(),
                })
            })
            .clone()
    }

    /// The `GET /api/v1/plans` body, serialised once per snapshot.
    pub fn plans_body(&self) -> Bytes {
        self.plans_body
            .get_or_init(|| {
                #[derive(Serialize)]
                struct Body<'a> {
                    plans: &'a [Plan],
                }
                to_bytes(&Body {
                    plans: &self.parts.plans,
                })
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_hash_text_shares_its_tag_serialises_as_the_hash_and_refuses_other_text() {
        let hash: SpecHash = format!("v1:sha256:{}", "0123456789abcdef".repeat(4))
            .parse()
            .expect("a valid hash");
        let tag = Text::from(hash.to_string());
        let text = HashText::new(&tag).expect("the tag is a hash");
        assert!(text.text().shares(&tag));
        assert_eq!(text.spec_hash(), hash);
        assert_eq!(
            serde_json::to_string(&text).expect("serialises"),
            serde_json::to_string(&hash).expect("serialises")
        );
        assert_eq!(HashText::from(hash), text);
        assert_eq!(text, hash);
        let other: SpecHash = format!("v1:sha256:{}", "f".repeat(64))
            .parse()
            .expect("a valid hash");
        assert_ne!(text, other);
        let upper = format!("v1:sha256:{}", "0123456789ABCDEF".repeat(4));
        for bad in ["(none)", "", upper.as_str(), "v2:sha256:00"] {
            assert!(HashText::new(&Text::from(bad)).is_none(), "{bad}");
        }
    }

    #[test]
    fn what_is_kept_per_instance_and_per_generation_stays_small() {
        // One per instance (300,000 at 100k groups) and one per generation kept (up to
        // `history_keep` per group): a word more is megabytes. (The eighth word is the
        // instance's traffic, a thin box, null for groups without `spec.traffic`.)
        assert_eq!(std::mem::size_of::<GroupInstance>(), 40);
        assert_eq!(std::mem::size_of::<HistoryEntry>(), 64);
        // One per group, in an `Arc`: 16 + 104 in jemalloc's 128-byte class (it was 112
        // before the traffic target groups; 1.6 MB more at 100k groups).
        assert_eq!(std::mem::size_of::<Group>(), 104);
    }

    #[test]
    fn seconds_and_outcomes_serialise_as_the_times_and_words_they_stand_for() {
        #[derive(Serialize)]
        struct Time(#[serde(serialize_with = "rfc3339")] SystemTime);
        fn json<T: Serialize>(value: &T) -> String {
            serde_json::to_string(value).expect("serialises")
        }
        for time in [
            SystemTime::UNIX_EPOCH,
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_999),
            SystemTime::UNIX_EPOCH - Duration::from_secs(1),
        ] {
            let expected = if time < SystemTime::UNIX_EPOCH {
                json(&Time(SystemTime::UNIX_EPOCH))
            } else {
                json(&Time(time))
            };
            assert_eq!(json(&Seconds::from(time)), expected, "{time:?}");
        }
        for outcome in [
            HistoryOutcome::Progressing,
            HistoryOutcome::Succeeded,
            HistoryOutcome::Failed,
            HistoryOutcome::RolledBack,
            HistoryOutcome::Superseded,
        ] {
            assert_eq!(json(&outcome), format!("\"{}\"", outcome.as_str()));
        }
    }

    #[test]
    fn status_body_is_valid_json_with_request_time_age() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let snap = Snapshot::new(SnapshotParts {
            inventory: vec![ProviderInventory {
                provider: "sim".into(),
                complete: true,
                collected_at: Some(t0),
                instances: 3,
            }],
            ..SnapshotParts::default()
        });
        let body = snap.status_body(t0 + Duration::from_secs(7));
        let v: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
        assert_eq!(v["inventory"][0]["age_seconds"], 7);
        assert_eq!(v["inventory"][0]["collected_at"], "2023-11-14T22:13:20Z");
        assert_eq!(v["plans"]["running"], 0);
        assert_eq!(v["revision"]["error"], serde_json::Value::Null);
    }
}
