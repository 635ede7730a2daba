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

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::ReconcileConfig;
use crate::drift::{
    self, Finding, GroupContext, GroupDrift, HashCount, Member, MemberHealth, Ownership,
    RemovalClass,
};
use crate::hash::SpecHash;
use crate::model::{Instance, Inventory};
use crate::spec::{Approval, GroupName, InstanceGroup, ParsedGroup, Strategy};
use crate::text::Text;

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// Rollout numbers of a group after rounding and the safety adjustments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutLimits {
    /// `maxSurge` resolved (percentages round up); at least 1 when `maxUnavailable`
    /// resolves to 0, so a rollout can always progress.
    pub surge: u32,
    /// `maxUnavailable` resolved (percentages round down), capped at `replicas - 1` so
    /// that a replacement never terminates the last healthy instance.
    pub unavailable: u32,
}

impl RolloutLimits {
    /// Resolve a group's rollout numbers.
    pub fn of(group: &InstanceGroup) -> Self {
        let spec = &group.spec;
        let replicas = spec.replicas.get();
        let unavailable = spec
            .rollout
            .max_unavailable
            .resolve(replicas, false)
            .min(replicas.saturating_sub(1));
        let mut surge = spec.rollout.max_surge.resolve(replicas, true);
        if surge == 0 && unavailable == 0 {
            surge = 1;
        }
        Self { surge, unavailable }
    }
}

/// The per-cycle termination budget: the smaller of the absolute cap and the fraction
/// of the fleet, the fraction rounded up so that a small fleet can still make progress
/// (a fraction of 0 disables terminations). A non-finite fraction counts as 0.
pub fn budget_limit(config: &ReconcileConfig, fleet: u32) -> u32 {
    let fraction = if config.max_replacement_fraction.is_finite() {
        config.max_replacement_fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    // fleet ≤ u32::MAX and fraction ≤ 1, so the product fits; `as` saturates anyway.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let by_fraction = (fraction * f64::from(fleet)).ceil() as u32;
    config.max_replacements.min(by_fraction)
}

/// FxHash (as in rustc) with a finaliser: a fast, non-keyed hasher for the planner's lookups by
/// instance id and group name. The keys come from our own tags and provider ids, and a
/// pathological input would only make one pass slower, never wrong.
#[derive(Debug, Default, Clone, Copy)]
struct FxHasher {
    hash: u64,
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        // The multiply only carries low input bits upwards, and hashbrown picks buckets
        // from the low bits: mix the high bits down (murmur3's finaliser).
        let mut h = self.hash;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }
}

type Fast = BuildHasherDefault<FxHasher>;
type FastMap<K, V> = HashMap<K, V, Fast>;

/// What a group needs before the budget is shared out.
struct Pending<'a> {
    index: usize,
    parsed: &'a ParsedGroup,
    drift: GroupDrift<'a>,
    complete: bool,
    /// Candidates for termination in pick order: replace set plus surplus picks.
    removals: Vec<Member<'a>>,
    /// Current members that stay (current minus surplus picks).
    keep: Vec<Member<'a>>,
}

/// A planner input that passed [`check`]: [`plan_checked`] cannot refuse it.
#[derive(Debug, Clone, Copy)]
pub struct Checked<'i, 'a>(&'i PlanInput<'a>);

/// Whether [`plan`] would accept `input`: no group named twice, no provider inventoried
/// twice, no instance listed twice by one provider. These are the only ways planning
/// fails, so a caller that checked first can release what it held from the previous
/// pass (its plan document) before planning with [`plan_checked`], knowing it gets a
/// new one, and without checking twice.
pub fn check<'i, 'a>(input: &'i PlanInput<'a>) -> Result<Checked<'i, 'a>, PlanError> {
    let names = || input.groups.iter().map(|g| g.group.name().as_str());
    if let Some(group) = first_repeat(names) {
        return Err(PlanError::DuplicateGroup {
            group: group.to_string(),
        });
    }
    let mut providers: HashSet<&str, Fast> = HashSet::default();
    for inv in input.inventories {
        if !providers.insert(inv.provider.as_str()) {
            return Err(PlanError::DuplicateInventory {
                provider: inv.provider.clone(),
            });
        }
        let ids = || inv.instances.iter().map(|i| i.id.as_str());
        if let Some(id) = first_repeat(ids) {
            return Err(PlanError::DuplicateInstance {
                provider: inv.provider.clone(),
                instance_id: id.to_string(),
            });
        }
    }
    Ok(Checked(input))
}

/// The first string that repeats an earlier one, in iteration order.
///
/// The daemon checks its input while it still holds the last plan document, which makes
/// this its memory peak: so this sorts 8-byte hashes (2.4 MB for 300,000 instance ids)
/// instead of building a set of the strings (13 MB with its growth), and only strings
/// whose hash repeats are compared, in a second pass.
fn first_repeat<'s, I>(items: impl Fn() -> I) -> Option<&'s str>
where
    I: Iterator<Item = &'s str>,
{
    let hash = |s: &str| Fast::default().hash_one(s);
    let mut hashes: Vec<u64> = items().map(hash).collect();
    hashes.sort_unstable();
    let repeated: HashSet<u64, Fast> = hashes
        .windows(2)
        .filter(|pair| pair[0] == pair[1])
        .map(|pair| pair[0])
        .collect();
    drop(hashes);
    if repeated.is_empty() {
        return None;
    }
    let mut seen: HashSet<&str, Fast> = HashSet::default();
    items()
        .filter(|s| repeated.contains(&hash(s)))
        .find(|s| !seen.insert(*s))
}

/// Plan one pass. See the module docs for the rules.
pub fn plan(input: &PlanInput<'_>) -> Result<PlanOutcome, PlanError> {
    check(input).map(plan_checked)
}

/// [`plan`] for an input [`check`] accepted.
pub fn plan_checked(checked: Checked<'_, '_>) -> PlanOutcome {
    let input = checked.0;
    // Desired groups sorted by name; `desired` maps a name to its position (names are
    // unique: checked).
    let mut order: Vec<&ParsedGroup> = input.groups.iter().collect();
    order.sort_unstable_by(|a, b| a.group.name().cmp(b.group.name()));
    let mut desired: FastMap<&str, usize> =
        FastMap::with_capacity_and_hasher(order.len(), Fast::default());
    for (i, g) in order.iter().enumerate() {
        desired.insert(g.group.name().as_str(), i);
    }

    // Inventories by provider (one each: checked).
    let complete: BTreeMap<&str, bool> = input
        .inventories
        .iter()
        .map(|inv| (inv.provider.as_str(), inv.complete))
        .collect();

    // Sort every observed instance into a desired group, an orphan, or unmanaged.
    let mut members: Vec<Vec<&Instance>> = vec![Vec::new(); order.len()];
    let mut orphans: BTreeMap<(&str, &str), Vec<&Instance>> = BTreeMap::new();
    let mut unmanaged: Vec<Finding> = Vec::new();
    let mut fleet: u32 = 0;
    for inv in input.inventories {
        for instance in &inv.instances {
            if !drift::counts(instance) {
                continue;
            }
            match drift::ownership(instance, input.owner) {
                Ownership::Unmanaged => {
                    unmanaged.push(drift::unmanaged_finding(
                        instance,
                        input.owner,
                        &inv.provider,
                    ));
                }
                Ownership::Ours { group } => {
                    fleet = fleet.saturating_add(1);
                    match desired.get(group) {
                        Some(&i) if order[i].group.spec.provider.as_str() == inv.provider => {
                            members[i].push(instance);
                        }
                        _ if inv.complete => {
                            orphans
                                .entry((group, inv.provider.as_str()))
                                .or_default()
                                .push(instance);
                        }
                        // Incomplete inventory: nothing is declared orphaned from it.
                        _ => {}
                    }
                }
            }
        }
    }
    unmanaged
        .sort_unstable_by(|a, b| (&a.provider, &a.instance_id).cmp(&(&b.provider, &b.instance_id)));

    // Orphan memory: consecutive complete sightings.
    let previous: HashMap<(&str, &str), u32> = input
        .memory
        .orphans
        .iter()
        .map(|o| {
            (
                (o.provider.as_str(), o.instance_id.as_str()),
                o.observations,
            )
        })
        .collect();
    let mut memory = PlanMemory::default();
    for ((group, provider), list) in &orphans {
        for instance in list {
            let before = previous
                .get(&(*provider, instance.id.as_str()))
                .copied()
                .unwrap_or(0);
            memory.orphans.push(OrphanSighting {
                provider: (*provider).to_owned(),
                instance_id: instance.id.to_string(),
                group: (*group).to_owned(),
                observations: before.saturating_add(1),
            });
        }
    }
    memory.orphans.sort_unstable();

    // Mass removal hold.
    let mut removed: Vec<&str> = orphans
        .keys()
        .map(|(g, _)| *g)
        .filter(|g| !desired.contains_key(g))
        .collect();
    removed.dedup();
    let hold = mass_removal_hold(&removed, input.groups.len(), input.config);

    // One shared text per provider for the reports (a handful: a linear search).
    let mut provider_texts: Vec<Text> = Vec::new();
    let mut provider_text = |name: &str| -> Text {
        if let Some(text) = provider_texts.iter().find(|t| t.as_str() == name) {
            return text.clone();
        }
        let text = Text::from(name);
        provider_texts.push(text.clone());
        text
    };

    // Classify every desired group.
    let mut reports: Vec<GroupReport> = Vec::with_capacity(order.len());
    let mut pending: Vec<Pending<'_>> = Vec::new();
    for (position, parsed) in order.iter().enumerate() {
        let spec = &parsed.group.spec;
        let provider = spec.provider.as_str();
        let inventory_complete = complete.get(provider).copied().unwrap_or(false);
        let list = members[position].as_slice();
        let ctx = GroupContext {
            name: parsed.group.name().as_str(),
            provider,
            hash: &parsed.hash,
            template: &spec.template,
            health: &spec.health,
            replicas: spec.replicas.get(),
            inventory_complete,
            now: input.now,
        };
        let mut drift = drift::classify_group(&ctx, list);
        let findings = std::mem::take(&mut drift.findings);
        let mut report = GroupReport {
            name: parsed.group.name().clone(),
            provider: provider_text(provider),
            desired_hash: Some(parsed.hash),
            replicas: Some(ctx.replicas),
            status: if findings.is_empty() && !inventory_complete {
                GroupStatus::Unknown
            } else if findings.is_empty() {
                GroupStatus::InSync
            } else {
                GroupStatus::Drifted
            },
            observed_hashes: std::mem::take(&mut drift.observed_hashes),
            drift: findings,
            notes: Vec::new(),
            plan_id: None,
            strategy: None,
            approval: None,
            deferred: 0,
            steps: Vec::new(),
        };
        if !inventory_complete {
            report.notes.push(format!(
                "inventory of provider `{provider}` is incomplete: missing instances are not launched"
            ));
        }
        let failed = input
            .failed
            .iter()
            .find(|f| f.group == ctx.name && f.hash == parsed.hash && f.commit == input.revision);
        let image_blocked =
            crate::policy::plan_hook(input.images, &mut report, &spec.template.image);
        if spec.suspend {
            report.status = GroupStatus::Suspended;
            report
                .notes
                .push("suspended: observed and reported, never acted on".into());
        } else if let Some(f) = failed {
            report.status = GroupStatus::Blocked;
            report.notes.push(format!(
                "generation {} failed and rolled back at {}; not planned again until a new commit or an explicit retry",
                f.hash.short(),
                f.commit
            ));
        } else if image_blocked {
            // policy.images: the image is not allowed (or could not be checked).
        } else if !report.drift.is_empty() {
            let replicas = ctx.replicas as usize;
            let mut current = drift.current.clone();
            let mut removals = drift.replace.clone();
            if current.len() > replicas {
                // The least preferred current instances go: not yet healthy first,
                // then the oldest.
                current.sort_unstable_by(|a, b| a.removal_key().cmp(&b.removal_key()));
                let keep = current.split_off(current.len() - replicas);
                removals.extend(current.into_iter().map(|m| Member {
                    removal: Some(RemovalClass::Surplus),
                    ..m
                }));
                current = keep;
            }
            pending.push(Pending {
                index: reports.len(),
                parsed,
                drift,
                complete: inventory_complete,
                removals,
                keep: current,
            });
        }
        reports.push(report);
    }

    // Share the budget: most urgent class first, then by name (the order of `pending`).
    let limit = budget_limit(input.config, fleet);
    let mut remaining = limit;
    let mut used = 0u32;
    let mut deferred_total = 0u32;
    pending.sort_by_key(|p| {
        p.removals
            .first()
            .and_then(|m| m.removal)
            .unwrap_or(RemovalClass::Surplus)
    });
    for p in &pending {
        let report = &mut reports[p.index];
        let wanted = u32::try_from(p.removals.len()).unwrap_or(u32::MAX);
        let granted = wanted.min(remaining);
        remaining -= granted;
        used += granted;
        let deferred = wanted - granted;
        deferred_total += deferred;
        report.deferred = deferred;
        if deferred > 0 {
            report.notes.push(format!(
                "{deferred} of {wanted} terminations deferred: the per-cycle budget of {limit} is spent"
            ));
        }
        let removals = &p.removals[..granted as usize];
        let group_steps = rollout_steps(p, removals);
        if group_steps.blocked {
            report
                .notes
                .push("stopped early: no further step is safe until the group is healthier".into());
        }
        if !group_steps.steps.is_empty() {
            let spec = &p.parsed.group.spec;
            let approval = if hold.is_some() {
                PlanApproval::Held
            } else if spec.approval == Approval::Manual {
                PlanApproval::Manual
            } else {
                PlanApproval::Auto
            };
            report.plan_id = Some(plan_id(
                input.revision,
                &report.provider,
                report.name.as_str(),
                Some(&p.parsed.hash),
                &group_steps.steps,
            ));
            report.strategy = Some(spec.rollout.strategy);
            report.status = if approval == PlanApproval::Auto {
                GroupStatus::Planned
            } else {
                GroupStatus::AwaitingApproval
            };
            report.approval = Some(approval);
            report.steps = group_steps.steps;
        }
    }

    // Orphaned groups, after every desired group.
    let eligible: HashSet<(&str, &str)> = memory
        .orphans
        .iter()
        .filter(|o| o.observations >= 2)
        .map(|o| (o.provider.as_str(), o.instance_id.as_str()))
        .collect();
    for ((group, provider), list) in &orphans {
        let mut sorted: Vec<&Instance> = list.clone();
        sorted.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        let moved = desired.contains_key(group);
        let mut report = GroupReport {
            name: GroupName::new(*group).expect("ownership admits only valid group names"),
            provider: provider_text(provider),
            desired_hash: None,
            replicas: None,
            status: GroupStatus::Drifted,
            observed_hashes: observed_hashes(&sorted),
            drift: sorted
                .iter()
                .map(|i| drift::orphaned_finding(i, group, provider, moved))
                .collect(),
            notes: Vec::new(),
            plan_id: None,
            strategy: None,
            approval: None,
            deferred: 0,
            steps: Vec::new(),
        };
        if !input.config.prune {
            report
                .notes
                .push("reconcile.prune is false: orphans are reported, never terminated".into());
        } else {
            let ready: Vec<&Instance> = sorted
                .iter()
                .copied()
                .filter(|i| eligible.contains(&(*provider, i.id.as_str())))
                .collect();
            let waiting = sorted.len() - ready.len();
            if waiting > 0 {
                report.notes.push(format!(
                    "{waiting} orphan(s) are pruned only after a second consecutive complete observation"
                ));
            }
            let wanted = u32::try_from(ready.len()).unwrap_or(u32::MAX);
            let granted = wanted.min(remaining);
            remaining -= granted;
            used += granted;
            let deferred = wanted - granted;
            deferred_total += deferred;
            report.deferred = deferred;
            if deferred > 0 {
                report.notes.push(format!(
                    "{deferred} of {wanted} terminations deferred: the per-cycle budget of {limit} is spent"
                ));
            }
            if granted > 0 {
                let steps = vec![Step::Terminate {
                    instance_ids: ready[..granted as usize]
                        .iter()
                        .map(|i| i.id.to_string())
                        .collect(),
                }];
                let approval = if hold.is_some() {
                    PlanApproval::Held
                } else {
                    PlanApproval::Auto
                };
                report.plan_id = Some(plan_id(input.revision, provider, group, None, &steps));
                report.status = if approval == PlanApproval::Auto {
                    GroupStatus::Planned
                } else {
                    GroupStatus::AwaitingApproval
                };
                report.approval = Some(approval);
                report.steps = steps;
            }
        }
        reports.push(report);
    }

    let document = PlanDocument {
        format_version: FORMAT_VERSION.to_owned(),
        revision: input.revision.to_owned(),
        changes: reports.iter().any(|r| !r.steps.is_empty()),
        drifted: reports.iter().any(|r| !r.drift.is_empty()),
        budget: Budget {
            limit,
            used,
            deferred: deferred_total,
            fleet,
        },
        hold,
        incomplete_providers: incomplete_providers(input, &complete),
        groups: reports,
        unmanaged,
    };
    PlanOutcome { document, memory }
}

fn incomplete_providers(input: &PlanInput<'_>, complete: &BTreeMap<&str, bool>) -> Vec<String> {
    let mut out: Vec<String> = complete
        .iter()
        .filter(|(_, ok)| !**ok)
        .map(|(p, _)| (*p).to_owned())
        .collect();
    for g in input.groups {
        let p = g.group.spec.provider.as_str();
        if !complete.contains_key(p) {
            out.push(p.to_owned());
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn observed_hashes(instances: &[&Instance]) -> Vec<HashCount> {
    let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
    for i in instances {
        *counts.entry(i.spec_hash().unwrap_or("(none)")).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(hash, count)| HashCount {
            hash: Text::from(hash),
            count,
        })
        .collect()
}

/// The hold for a revision that removes every group, or more than `max_prune_fraction`
/// of them. "Removed" groups are those that still have our instances on a complete
/// inventory but are gone from the desired state; the fraction is
/// `removed / (desired + removed)`.
fn mass_removal_hold(removed: &[&str], desired: usize, config: &ReconcileConfig) -> Option<Hold> {
    if removed.is_empty() {
        return None;
    }
    let total = desired + removed.len();
    #[allow(clippy::cast_precision_loss)]
    let fraction = removed.len() as f64 / total as f64;
    let limit = if config.max_prune_fraction.is_finite() {
        config.max_prune_fraction
    } else {
        0.0
    };
    let reason = if desired == 0 {
        format!(
            "the revision removes every group ({} with running instances)",
            removed.len()
        )
    } else if fraction > limit {
        format!(
            "the revision removes {} of {} groups ({:.0}% > max_prune_fraction {:.0}%)",
            removed.len(),
            total,
            fraction * 100.0,
            limit * 100.0
        )
    } else {
        return None;
    };
    Some(Hold {
        reason,
        removed_groups: removed.iter().map(|g| (*g).to_owned()).collect(),
    })
}

/// The deterministic plan id: `plan-` and 16 hex digits of a SHA-256 over the revision,
/// provider, group, target hash and the steps. The same observation at the same revision
/// yields the same id; any change of the steps yields a new one, so launch tokens
/// derived from it never collide across plans.
pub fn plan_id(
    revision: &str,
    provider: &str,
    group: &str,
    target: Option<&SpecHash>,
    steps: &[Step],
) -> String {
    let mut h = Sha256::new();
    for part in [revision, provider, group] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    match target {
        Some(t) => h.update(t.digest()),
        None => h.update([0u8; 32]),
    }
    for step in steps {
        match step {
            Step::Launch { count } => {
                h.update(b"L");
                h.update(count.to_le_bytes());
            }
            Step::WaitHealthy {
                instance_ids,
                grace,
                deadline,
            } => {
                h.update(b"W");
                h.update(grace.as_millis().to_le_bytes());
                h.update(deadline.as_millis().to_le_bytes());
                for id in instance_ids {
                    h.update(id.as_bytes());
                    h.update([0]);
                }
            }
            Step::Bake { duration } => {
                h.update(b"B");
                h.update(duration.as_millis().to_le_bytes());
            }
            Step::Terminate { instance_ids } => {
                h.update(b"T");
                for id in instance_ids {
                    h.update(id.as_bytes());
                    h.update([0]);
                }
            }
        }
        h.update([0xff]);
    }
    let digest = h.finalize();
    format!("plan-{}", hex::encode(&digest[..8]))
}

struct GroupSteps {
    steps: Vec<Step>,
    blocked: bool,
}

/// Simulate the rollout of one group and emit its steps.
///
/// State tracked: live instances, healthy instances, target-generation instances still
/// starting. Each round launches as many as the strategy and `maxSurge` allow, waits for
/// them to be healthy, bakes when healthy old instances are about to go, then
/// terminates removal candidates (not-healthy first) while the healthy count stays at or
/// above the floor. When a round can neither launch nor terminate, it waits for the
/// pre-existing starting instances (only then: a plan is not made to depend on them
/// otherwise); if there are none, it stops (`blocked`).
fn rollout_steps(p: &Pending<'_>, removals: &[Member<'_>]) -> GroupSteps {
    let spec = &p.parsed.group.spec;
    let replicas = spec.replicas.get();
    let limits = RolloutLimits::of(&p.parsed.group);
    let total_initial = u32::try_from(p.drift.total()).unwrap_or(u32::MAX);
    let removed = u32::try_from(removals.len()).unwrap_or(u32::MAX);
    let kept = total_initial - removed;
    let target = if p.complete {
        replicas
    } else {
        replicas.min(total_initial)
    };
    let mut to_launch = target.saturating_sub(kept);

    let healthy_of = |ms: &[Member<'_>]| {
        u32::try_from(
            ms.iter()
                .filter(|m| m.health == MemberHealth::Healthy)
                .count(),
        )
        .unwrap_or(u32::MAX)
    };
    let mut healthy = healthy_of(&p.drift.current) + healthy_of(&p.drift.replace);
    let floor = replicas.saturating_sub(limits.unavailable).min(healthy);
    let mut starting: Vec<String> = p
        .keep
        .iter()
        .filter(|m| m.health == MemberHealth::Starting)
        .map(|m| m.instance.id.to_string())
        .collect();
    starting.sort_unstable();

    let mut queue: VecDeque<(&str, bool)> = {
        let mut v: Vec<(&str, bool)> = removals
            .iter()
            .map(|m| (m.instance.id.as_str(), m.health == MemberHealth::Healthy))
            .collect();
        // Not-healthy first; otherwise keep the pick order.
        v.sort_by_key(|(_, h)| *h);
        v.into()
    };

    let cap = replicas.saturating_add(limits.surge);
    let mut total = total_initial;
    let mut first_launch = true;
    let mut steps = Vec::new();
    let mut blocked = false;
    let wait = |ids: Vec<String>| Step::WaitHealthy {
        instance_ids: ids,
        grace: spec.health.grace,
        deadline: spec.health.deadline,
    };
    while !(queue.is_empty() && to_launch == 0) {
        let room = cap.saturating_sub(total);
        let replacing = !queue.is_empty();
        let launch = if to_launch == 0 {
            0
        } else {
            match spec.rollout.strategy {
                Strategy::BlueGreen if first_launch => to_launch,
                Strategy::Canary if first_launch && replacing => to_launch.min(room).min(1),
                _ => to_launch.min(room),
            }
        };
        if launch > 0 {
            steps.push(Step::Launch { count: launch });
            total += launch;
            to_launch -= launch;
            healthy += launch;
            steps.push(wait(Vec::new()));
            first_launch = false;
        }
        let mut batch = Vec::new();
        let mut batch_has_healthy = false;
        while let Some(&(id, is_healthy)) = queue.front() {
            if is_healthy {
                if healthy <= floor {
                    break;
                }
                healthy -= 1;
                batch_has_healthy = true;
            }
            batch.push(id.to_owned());
            queue.pop_front();
            total -= 1;
        }
        if !batch.is_empty() {
            if launch > 0 && batch_has_healthy && !spec.rollout.bake.is_zero() {
                steps.push(Step::Bake {
                    duration: spec.rollout.bake,
                });
            }
            batch.sort_unstable();
            steps.push(Step::Terminate {
                instance_ids: batch,
            });
        } else if launch == 0 {
            if starting.is_empty() {
                blocked = true;
                break;
            }
            healthy += u32::try_from(starting.len()).unwrap_or(u32::MAX);
            steps.push(wait(std::mem::take(&mut starting)));
        }
    }
    GroupSteps { steps, blocked }
}
