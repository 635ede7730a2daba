//! The replacement planner (design section 6) and the versioned plan document
//! (`phoenix plan --json`, `format_version: "1.0"`).
//!
//! [`plan`] is one pure function: desired groups, every provider's inventory, the
//! planner's memory from the previous pass, the reconcile config, recorded failures and
//! `now` in; findings, per-group step lists and the updated memory out. It performs no
//! IO and never reads the clock, so the same input always yields the same document,
//! byte for byte.
//!
//! The rules it enforces, in the order they apply:
//! 1. Only instances whose `phoenix:owner` is exactly ours and which carry a valid
//!    `phoenix:group` are ever named in a step ([`crate::drift::ownership`]).
//! 2. An incomplete (or absent) inventory yields no `missing` finding, no launch to make
//!    up missing replicas, and no `orphaned` finding or prune for that provider.
//! 3. `suspend: true` groups, and groups whose desired hash failed and rolled back at
//!    this revision, get findings but no plan.
//! 4. Every termination counts against one per-cycle budget:
//!    `min(max_replacements, ceil(max_replacement_fraction × fleet))`. Groups are served
//!    by urgency (groups with failing instances first, then modified, outdated, surplus),
//!    ties by name; orphan prunes come last.
//! 5. Steps launch before they terminate; `maxSurge` (rounded up) caps extra instances,
//!    `maxUnavailable` (rounded down, and at most `replicas - 1`) sets the healthy floor
//!    that no termination may cross. A group of one always launches first.
//! 6. Orphans are pruned only with `prune: true` after two consecutive complete
//!    observations ([`PlanMemory`]).
//! 7. A revision that removes every group, or more than `max_prune_fraction` of them,
//!    holds every plan of the pass for approval.
//!
//! A pass runs in phases, one module each: [`check`] refuses a self-contradicting input;
//! `partition` sorts the observation into desired groups, orphans and unmanaged
//! instances; `groups` classifies each desired group; `rollout` shares the budget
//! (`budget`, the one place terminations are granted) and simulates each rollout;
//! `orphans` remembers and prunes orphans; `holds` decides the mass-removal hold and
//! every plan's approval; `id` derives the deterministic [`plan_id`].

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::config::ReconcileConfig;
use crate::drift::{Finding, HashCount};
use crate::hash::SpecHash;
use crate::model::Inventory;
use crate::spec::{GroupName, ParsedGroup, Strategy};
use crate::text::Text;

mod budget;
mod check;
mod groups;
mod holds;
mod id;
mod orphans;
mod partition;
mod rollout;

pub use budget::budget_limit;
pub use check::{Checked, check};
pub use id::plan_id;
pub use rollout::RolloutLimits;

/// The version of the plan document format.
pub const FORMAT_VERSION: &str = "1.0";

/// Everything one planning pass looks at.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// The revision (commit id, or folder content hash) the groups come from.
    pub revision: &'a str,
    /// The daemon's `owner`.
    pub owner: &'a str,
    /// The desired groups of that revision.
    pub groups: &'a [ParsedGroup],
    /// One inventory pass per provider. A provider without an entry counts as an
    /// incomplete inventory.
    pub inventories: &'a [Inventory],
    /// `reconcile` settings.
    pub config: &'a ReconcileConfig,
    /// What the previous pass remembered; `PlanMemory::default()` on first start.
    pub memory: &'a PlanMemory,
    /// Generations that failed and rolled back.
    pub failed: &'a [FailedGeneration],
    /// `policy.images` verdicts for the images the groups name
    /// ([`crate::policy::NO_POLICY`] when no policy is configured).
    pub images: &'a crate::policy::ImageVerdicts,
    /// When the inventory was observed.
    pub now: SystemTime,
}

/// A generation that failed and was rolled back. It is not planned again while the
/// revision is still `commit`; a new commit, or the caller dropping the record (an
/// explicit retry), lifts the block.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FailedGeneration {
    /// The group.
    pub group: String,
    /// The hash that failed.
    pub hash: SpecHash,
    /// The revision at which it failed.
    pub commit: String,
}

/// The planner's memory between passes. Plain data: the daemon persists it as JSON and
/// hands it back on the next pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanMemory {
    /// Orphaned instances seen on consecutive complete inventory passes, sorted by
    /// provider then instance id.
    #[serde(default)]
    pub orphans: Vec<OrphanSighting>,
    /// An operator's change-window override (`POST /api/v1/windows/override`): every
    /// window is lifted before this instant (`crate::window`). Kept while in the future.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_override: Option<crate::window::Override>,
    /// The desired group names of the last pass, sorted: what the next revision's
    /// removals from Git are counted against (the mass-removal hold). `None` before the
    /// first pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_groups: Option<Vec<String>>,
    /// The mass-removal hold in force. It sticks to the revision that caused it: every
    /// plan stays held (approved one by one) until each removed group is back in Git or
    /// has no instance left on a complete inventory, whatever the fraction is by then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<Hold>,
}

/// How often in a row an orphaned instance was seen on a complete inventory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OrphanSighting {
    /// Provider name.
    pub provider: String,
    /// Instance id.
    pub instance_id: String,
    /// Its `phoenix:group` tag.
    pub group: String,
    /// Consecutive complete observations, this pass included.
    pub observations: u32,
}

/// Why a pass could not be planned: the input contradicts itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Two desired groups share a name (the source should have refused the revision).
    #[error("group `{group}` appears twice in the desired state")]
    DuplicateGroup {
        /// The name.
        group: String,
    },
    /// Two inventories for one provider.
    #[error("provider `{provider}` has two inventories in one pass")]
    DuplicateInventory {
        /// The provider.
        provider: String,
    },
    /// An inventory lists one instance twice.
    #[error("inventory of provider `{provider}` lists instance `{instance_id}` twice")]
    DuplicateInstance {
        /// The provider.
        provider: String,
        /// The instance.
        instance_id: String,
    },
}

/// The result of a pass: the document and the memory for the next pass.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanOutcome {
    /// Findings and plans.
    pub document: PlanDocument,
    /// Hand this to the next pass.
    pub memory: PlanMemory,
}

/// The plan document, `format_version` 1.0. Fields are added, never renamed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanDocument {
    /// Always [`FORMAT_VERSION`].
    pub format_version: String,
    /// The revision planned.
    pub revision: String,
    /// Whether any group has steps (including plans awaiting approval).
    pub changes: bool,
    /// Whether any group has a drift finding (unmanaged instances do not count).
    pub drifted: bool,
    /// The per-cycle termination budget and its use.
    pub budget: Budget,
    /// Set when the revision removes too many groups; every plan then waits for approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<Hold>,
    /// Providers whose inventory was incomplete or absent, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incomplete_providers: Vec<String>,
    /// Desired groups sorted by name, then orphaned groups sorted by name and provider.
    pub groups: Vec<GroupReport>,
    /// Instances in the watched scope that are not ours to act on, by provider and id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmanaged: Vec<Finding>,
}

/// The blast-radius budget of one pass: terminations (replacements, surplus, prunes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// `min(max_replacements, ceil(max_replacement_fraction × fleet))`.
    pub limit: u32,
    /// Terminations planned this pass.
    pub used: u32,
    /// Terminations wanted but left for later passes.
    pub deferred: u32,
    /// Our instances observed, across providers.
    pub fleet: u32,
}

/// Why a revision is held for approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// For humans.
    pub reason: String,
    /// Groups that still have instances but are gone from the desired state, sorted.
    pub removed_groups: Vec<String>,
}

/// Where a group stands after this pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupStatus {
    /// No drift, nothing to do.
    InSync,
    /// No drift seen, but the provider's inventory was incomplete or absent, so
    /// instances may be missing unseen.
    Unknown,
    /// Steps planned and free to run.
    Planned,
    /// Steps planned, waiting for approval (`approval: manual`, or a held revision).
    AwaitingApproval,
    /// Drift found but nothing planned this pass (budget spent, or inventory incomplete).
    Drifted,
    /// `suspend: true`: observed and reported, never acted on.
    Suspended,
    /// The desired hash failed and rolled back at this revision.
    Blocked,
}

/// Whether a plan may run on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanApproval {
    /// Runs as soon as it is made.
    Auto,
    /// `approval: manual`: waits for `POST /api/v1/plans/{id}/approve`.
    Manual,
    /// The revision is held (see [`PlanDocument::hold`]); waits for approval.
    Held,
}

/// One step of a plan. Steps run in order; every step is recorded before it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Step {
    /// Launch `count` instances of the plan's target generation.
    Launch {
        /// How many.
        count: u32,
    },
    /// Wait until every instance this plan launched so far, and every instance listed,
    /// is healthy; an instance not healthy `deadline` after its launch fails the plan
    /// (failing checks within `grace` of launch do not count).
    WaitHealthy {
        /// Pre-existing instances of the target generation that were still starting.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        instance_ids: Vec<String>,
        /// `health.grace`.
        #[serde(with = "crate::duration")]
        grace: Duration,
        /// `health.deadline`.
        #[serde(with = "crate::duration")]
        deadline: Duration,
    },
    /// Keep the new instances healthy for `duration` before old ones go.
    Bake {
        /// `rollout.bake`.
        #[serde(with = "crate::duration")]
        duration: Duration,
    },
    /// Terminate these instances (sorted within the step).
    Terminate {
        /// Instance ids.
        instance_ids: Vec<String>,
    },
}

/// One group's part of the document: findings and, when there is one, its plan.
///
/// The daemon keeps the last document, one report per group (100,000 at the largest
/// fleets), so the name is the desired group's own shared name and the provider one
/// shared text per provider and pass, not a copy per group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupReport {
    /// Group name (the `phoenix:group` tag for orphaned groups).
    pub name: GroupName,
    /// The provider the group (or the orphan) is on.
    pub provider: Text,
    /// The desired hash; absent for an orphaned group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_hash: Option<SpecHash>,
    /// `spec.replicas`; absent for an orphaned group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Where the group stands.
    pub status: GroupStatus,
    /// Spec hashes seen on the group's instances, with counts, sorted by hash.
    #[serde(default)]
    pub observed_hashes: Vec<HashCount>,
    /// Findings: group-level first, then per instance by id.
    #[serde(default)]
    pub drift: Vec<Finding>,
    /// Why something was not planned (budget, incomplete inventory, failures, blocks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Deterministic plan id, when there are steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    /// The rollout strategy, when there are steps for a desired group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// Whether the plan may run on its own, when there are steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<PlanApproval>,
    /// Terminations this group wanted but the budget deferred to a later pass.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub deferred: u32,
    /// The plan, in order. Empty when nothing is planned.
    #[serde(default)]
    pub steps: Vec<Step>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl GroupReport {
    /// Whether the plan waits for approval.
    pub fn awaiting_approval(&self) -> bool {
        matches!(
            self.approval,
            Some(PlanApproval::Manual | PlanApproval::Held)
        )
    }
}

impl PlanDocument {
    /// Keep only the named group (the CLI's `--group`), recomputing `changes` and
    /// `drifted`. Unmanaged instances are kept only when they claim that group.
    pub fn retain_group(&mut self, name: &str) {
        self.groups.retain(|g| g.name.as_str() == name);
        self.unmanaged.retain(|f| f.group.as_deref() == Some(name));
        self.changes = self.groups.iter().any(|g| !g.steps.is_empty());
        self.drifted = self.groups.iter().any(|g| !g.drift.is_empty());
    }
}

/// Plan one pass. See the module docs for the rules.
pub fn plan(input: &PlanInput<'_>) -> Result<PlanOutcome, PlanError> {
    check(input).map(plan_checked)
}

/// [`plan`] for an input [`check`] accepted.
pub fn plan_checked(checked: Checked<'_, '_>) -> PlanOutcome {
    let input = checked.0;
    let parts = partition::partition(input);
    let mut memory = orphans::remember(&parts.orphans, input.memory);
    memory.window_override = crate::window::lasting_override(input.memory, input.now);
    let hold = holds::mass_removal_hold(input, &parts);
    memory.desired_groups = Some(holds::desired_names(&parts));
    memory.hold.clone_from(&hold);
    let mut providers = groups::ProviderTexts::default();
    let (mut reports, pending) = groups::classify(input, &parts, &mut providers);
    let mut budget = budget::Ledger::new(budget_limit(input.config, parts.fleet));
    rollout::plan_rollouts(input, pending, &mut reports, &mut budget, hold.is_some());
    let prunes = orphans::PruneContext {
        input,
        parts: &parts,
        memory: &memory,
        held: hold.is_some(),
    };
    orphans::plan_prunes(&prunes, &mut budget, &mut providers, &mut reports);
    let document = PlanDocument {
        format_version: FORMAT_VERSION.to_owned(),
        revision: input.revision.to_owned(),
        changes: reports.iter().any(|r| !r.steps.is_empty()),
        drifted: reports.iter().any(|r| !r.drift.is_empty()),
        budget: budget.summary(parts.fleet),
        hold,
        incomplete_providers: partition::incomplete_providers(input, &parts),
        groups: reports,
        unmanaged: parts.unmanaged,
    };
    PlanOutcome { document, memory }
}
