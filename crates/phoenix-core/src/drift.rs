//! Drift classification (design section 5): how each observed instance relates to the
//! desired state, as findings a human can read and as the member lists the planner
//! consumes.
//!
//! Everything here is a pure function of the desired group, the instances observed for
//! it and the `now` the caller observed. The kinds:
//!
//! | kind        | scope        | meaning |
//! |-------------|--------------|---------|
//! | `outdated`  | instance     | its `phoenix:spec-hash` tag is not the group's current hash (or is absent/unparsable) |
//! | `modified`  | instance     | the hash is current but an observed attribute differs from the template |
//! | `unhealthy` | instance     | stopped/stopping, unhealthy past `health.grace`, or no verdict by `health.deadline` |
//! | `missing`   | group        | fewer instances than `replicas` (only from a complete inventory) |
//! | `surplus`   | group        | more instances than `replicas` |
//! | `orphaned`  | instance     | our owner tag, but its group is not in the desired state on its provider |
//! | `unmanaged` | instance     | in the watched scope (inventory lists every instance carrying the `phoenix:owner` key) but not ours to act on; also a target in a group's target group that is not one of our instances |
//! | `unregistered` | instance  | a current instance of a group with `spec.traffic` that is not registered in one of its target groups ([`unregistered_finding`]) |
//!
//! `unmanaged` is decided by [`ownership`]: an instance whose `phoenix:owner` value is
//! not ours (another Phoenix install, or a hand-made tag), or that carries our owner but
//! no valid `phoenix:group`, is reported and never touched. The planner never acts on an
//! instance whose owner tag is not exactly ours.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::hash::SpecHash;
use crate::model::{Instance, InstanceHealth, InstanceState};
use crate::spec::{GroupName, Health, HealthCheck, Template};
use crate::tags;
use crate::text::Text;

/// The kind of a drift finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// Fewer instances than `replicas`.
    Missing,
    /// More instances than `replicas`.
    Surplus,
    /// Spec-hash tag differs from the group's current hash.
    Outdated,
    /// Hash current, attributes changed out of band.
    Modified,
    /// Failing health past grace, or stopped.
    Unhealthy,
    /// Our owner tag, group gone from the desired state.
    Orphaned,
    /// In the watched scope but not ours to act on. Report only.
    Unmanaged,
    /// The group's image breaks `policy.images`: nothing is launched from it.
    PolicyViolation,
    /// A current instance of a group with `spec.traffic` is not registered (or is
    /// draining, or `unused`) in one of its target groups. Action: register it again.
    Unregistered,
}

impl DriftKind {
    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftKind::Missing => "missing",
            DriftKind::Surplus => "surplus",
            DriftKind::Outdated => "outdated",
            DriftKind::Modified => "modified",
            DriftKind::Unhealthy => "unhealthy",
            DriftKind::Orphaned => "orphaned",
            DriftKind::Unmanaged => "unmanaged",
            DriftKind::PolicyViolation => "policy_violation",
            DriftKind::Unregistered => "unregistered",
        }
    }
}

impl fmt::Display for DriftKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A template attribute compared by the `modified` check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Field {
    /// `template.image`.
    Image,
    /// `template.instanceType`.
    InstanceType,
    /// `template.subnetIds`: the instance's subnet must be one of them.
    SubnetId,
    /// `template.securityGroupIds`, compared as a set.
    SecurityGroupIds,
}

impl Field {
    /// The camelCase name used on the wire (the template key).
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Image => "image",
            Field::InstanceType => "instanceType",
            Field::SubnetId => "subnetId",
            Field::SecurityGroupIds => "securityGroupIds",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One drift finding. Which optional fields are set depends on the kind:
/// per-instance kinds carry `instance_id`; `missing`/`surplus` carry `count`;
/// `modified` carries `field`, `expected` and `observed`; `outdated` carries the
/// desired hash as `expected` and the instance's tag as `observed`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Finding {
    /// What kind of drift.
    pub kind: DriftKind,
    /// The group: the desired group, or the `phoenix:group` tag of an orphaned or
    /// unmanaged instance. `None` for an unmanaged instance without that tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The provider whose inventory showed it.
    pub provider: String,
    /// The instance, for per-instance kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// How many instances, for `missing` and `surplus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// The differing attribute, for `modified`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<Field>,
    /// What the desired state says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// What the provider reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<String>,
    /// One line for humans saying why this is drift.
    pub reason: String,
}

impl Finding {
    fn instance(kind: DriftKind, group: Option<&str>, provider: &str, id: &str) -> Self {
        Self {
            kind,
            group: group.map(str::to_owned),
            provider: provider.to_owned(),
            instance_id: Some(id.to_owned()),
            count: None,
            field: None,
            expected: None,
            observed: None,
            reason: String::new(),
        }
    }

    fn group_count(kind: DriftKind, group: &str, provider: &str, count: u32) -> Self {
        Self {
            kind,
            group: Some(group.to_owned()),
            provider: provider.to_owned(),
            instance_id: None,
            count: Some(count),
            field: None,
            expected: None,
            observed: None,
            reason: String::new(),
        }
    }
}

/// Who an observed instance belongs to, from its tags alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership<'a> {
    /// Our owner tag and a valid group name: ours to act on.
    Ours {
        /// The `phoenix:group` tag.
        group: &'a str,
    },
    /// Not ours to act on: another owner, or our owner without a usable group tag.
    Unmanaged,
}

/// Decide whether an instance is ours. Only an exact match of `phoenix:owner` with our
/// owner, plus a `phoenix:group` tag that is a valid group name, makes it ours.
pub fn ownership<'a>(instance: &'a Instance, owner: &str) -> Ownership<'a> {
    match (instance.owner(), instance.group()) {
        (Some(o), Some(group)) if o == owner && GroupName::new(group).is_ok() => {
            Ownership::Ours { group }
        }
        _ => Ownership::Unmanaged,
    }
}

/// The `unmanaged` finding for an instance [`ownership`] refused.
pub fn unmanaged_finding(instance: &Instance, owner: &str, provider: &str) -> Finding {
    let mut finding = Finding::instance(
        DriftKind::Unmanaged,
        instance.group(),
        provider,
        &instance.id,
    );
    finding.observed = instance.owner().map(str::to_owned);
    finding.reason = match instance.owner() {
        Some(o) if o == owner => {
            "carries our owner tag but no valid phoenix:group tag; reported, never touched".into()
        }
        Some(o) => format!("owned by `{o}`, not by `{owner}`; reported, never touched"),
        None => "has no phoenix:owner tag; reported, never touched".into(),
    };
    finding
}

/// The `unregistered` finding of a current instance that is `state` (`None`: not
/// listed) in `target_group`.
pub fn unregistered_finding(
    group: &str,
    provider: &str,
    id: &str,
    target_group: &str,
    state: crate::traffic::TargetState,
) -> Finding {
    let mut finding = Finding::instance(DriftKind::Unregistered, Some(group), provider, id);
    finding.expected = Some(target_group.to_owned());
    finding.observed = Some(state.as_str().to_owned());
    finding.reason =
        format!("not registered in target group {target_group} ({state}); it is registered again");
    finding
}

/// The `unmanaged` finding of a target in one of `group`'s target groups that is not an
/// instance Phoenix owns: reported, never deregistered.
pub fn foreign_target_finding(
    group: &str,
    provider: &str,
    id: &str,
    target_group: &str,
) -> Finding {
    let mut finding = Finding::instance(DriftKind::Unmanaged, Some(group), provider, id);
    finding.observed = Some(target_group.to_owned());
    finding.reason = format!(
        "registered in target group {target_group} of group `{group}` but not an instance this Phoenix owns; reported, never deregistered"
    );
    finding
}

/// The `orphaned` finding for one of our instances whose group is not desired on
/// `provider`.
pub fn orphaned_finding(instance: &Instance, group: &str, provider: &str, moved: bool) -> Finding {
    let mut finding = Finding::instance(DriftKind::Orphaned, Some(group), provider, &instance.id);
    finding.reason = if moved {
        format!("group `{group}` now runs on another provider than `{provider}`")
    } else {
        format!("group `{group}` is no longer in the desired state")
    };
    finding
}

/// How an instance's health looks to the planner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MemberHealth {
    /// Serving: counts toward the healthy floor.
    Healthy,
    /// Within grace/deadline without a verdict: may still become healthy.
    Starting,
    /// Stopped, or failing past grace, or no verdict by the deadline: replace.
    Failing,
}

/// Why an instance leaves the group; also the order in which instances are picked
/// for removal (smaller first) when a blast-radius cap or `surplus` chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RemovalClass {
    /// Failing: it serves nothing, replace it first.
    Unhealthy,
    /// Changed out of band.
    Modified,
    /// From an older generation.
    Outdated,
    /// A current instance beyond `replicas`.
    Surplus,
}

/// One instance of a desired group, as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Member<'a> {
    /// The observation.
    pub instance: &'a Instance,
    /// Its health verdict.
    pub health: MemberHealth,
    /// Why it goes, when it does. `None` for a current, matching, non-failing instance
    /// (unless it is later picked as surplus).
    pub removal: Option<RemovalClass>,
}

impl Member<'_> {
    /// Sort key for picking instances to remove: by class, then not-yet-healthy
    /// before healthy, then oldest first (unknown launch time counts as oldest), then id.
    pub fn removal_key(&self) -> (RemovalClass, bool, Option<SystemTime>, &str) {
        (
            self.removal.unwrap_or(RemovalClass::Surplus),
            self.health == MemberHealth::Healthy,
            self.instance.launch_time,
            self.instance.id.as_str(),
        )
    }
}

/// How many instances carry one observed spec hash.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HashCount {
    /// The `phoenix:spec-hash` tag as written (`(none)` when absent), shared with the
    /// instances' tags.
    pub hash: Text,
    /// Instances carrying it.
    pub count: u32,
}

/// The classification of one desired group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupDrift<'a> {
    /// Findings in a fixed order: `missing`/`surplus` first, then per instance by id.
    pub findings: Vec<Finding>,
    /// Instances of the current generation that match the template and are not failing.
    pub current: Vec<Member<'a>>,
    /// Instances to replace: outdated, modified or unhealthy. Sorted by
    /// [`Member::removal_key`].
    pub replace: Vec<Member<'a>>,
    /// Observed hashes with counts, sorted by hash.
    pub observed_hashes: Vec<HashCount>,
}

impl GroupDrift<'_> {
    /// Every instance of the group that counts (current plus to-replace).
    pub fn total(&self) -> usize {
        self.current.len() + self.replace.len()
    }
}

/// Everything [`classify_group`] needs to know about one desired group.
#[derive(Debug, Clone, Copy)]
pub struct GroupContext<'a> {
    /// Group name.
    pub name: &'a str,
    /// Provider name (for findings).
    pub provider: &'a str,
    /// The group's current hash.
    pub hash: &'a SpecHash,
    /// The hashed template.
    pub template: &'a Template,
    /// Health rules.
    pub health: &'a Health,
    /// `spec.replicas`.
    pub replicas: u32,
    /// Whether the provider's inventory pass was complete. An incomplete pass never
    /// yields `missing`.
    pub inventory_complete: bool,
    /// The observation time.
    pub now: SystemTime,
}

/// The health verdict of one instance under `health`, at `now`, with a reason when
/// it is failing. An instance without a launch time is treated as past grace and
/// deadline (its age cannot be known, and every real provider reports it).
pub fn member_health(
    instance: &Instance,
    health: &Health,
    now: SystemTime,
) -> (MemberHealth, Option<String>) {
    let age = instance
        .launch_time
        .map(|t| now.duration_since(t).unwrap_or(Duration::ZERO));
    let past = |limit: Duration| age.is_none_or(|a| a >= limit);
    match instance.state {
        InstanceState::Stopped
        | InstanceState::Stopping
        | InstanceState::ShuttingDown
        | InstanceState::Terminated => (
            MemberHealth::Failing,
            Some(format!("instance is {}", instance.state)),
        ),
        InstanceState::Pending => {
            if past(health.deadline) {
                (
                    MemberHealth::Failing,
                    Some(format!(
                        "still pending after the {} deadline",
                        crate::duration::format(health.deadline)
                    )),
                )
            } else {
                (MemberHealth::Starting, None)
            }
        }
        InstanceState::Running => match (health.check, instance.health) {
            (HealthCheck::None, _) | (_, InstanceHealth::Healthy) => (MemberHealth::Healthy, None),
            (_, InstanceHealth::Unhealthy) if past(health.grace) => (
                MemberHealth::Failing,
                Some(format!(
                    "health checks failing past the {} grace period",
                    crate::duration::format(health.grace)
                )),
            ),
            (_, InstanceHealth::Unknown) if past(health.deadline) => (
                MemberHealth::Failing,
                Some(format!(
                    "no health verdict after the {} deadline",
                    crate::duration::format(health.deadline)
                )),
            ),
            _ => (MemberHealth::Starting, None),
        },
    }
}

/// The `modified` findings of an instance whose hash is current: image, instance
/// type, subnet (must be one of `subnetIds` when that list is non-empty) and security
/// groups (as a set, when the template lists any). An attribute the provider did not
/// report counts as different when the template names one.
pub fn modified_fields(instance: &Instance, template: &Template) -> Vec<(Field, String, String)> {
    let mut out = Vec::new();
    if instance.image != template.image.as_str() {
        out.push((
            Field::Image,
            template.image.to_string(),
            instance.image.to_string(),
        ));
    }
    if instance.instance_type != template.instance_type.as_str() {
        out.push((
            Field::InstanceType,
            template.instance_type.to_string(),
            instance.instance_type.to_string(),
        ));
    }
    if !template.subnet_ids.is_empty() {
        let ok = instance
            .subnet_id
            .as_deref()
            .is_some_and(|s| template.subnet_ids.iter().any(|t| t.as_str() == s));
        if !ok {
            out.push((
                Field::SubnetId,
                join(template.subnet_ids.iter().map(|s| s.as_str())),
                instance.subnet_id.as_deref().unwrap_or("(none)").to_owned(),
            ));
        }
    }
    if !template.security_group_ids.is_empty() {
        let mut expected: Vec<&str> = template
            .security_group_ids
            .iter()
            .map(|s| s.as_str())
            .collect();
        expected.sort_unstable();
        expected.dedup();
        let mut observed: Vec<&str> = instance
            .security_group_ids
            .iter()
            .map(|g| g.as_str())
            .collect();
        observed.sort_unstable();
        observed.dedup();
        if expected != observed {
            out.push((
                Field::SecurityGroupIds,
                join(expected.into_iter()),
                if observed.is_empty() {
                    "(none)".to_owned()
                } else {
                    join(observed.into_iter())
                },
            ));
        }
    }
    out
}

fn join<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(",")
}

/// Whether an observed instance counts as a member of anything: instances already
/// shutting down or terminated are on their way out, so they are neither counted nor
/// acted on.
pub fn counts(instance: &Instance) -> bool {
    !matches!(
        instance.state,
        InstanceState::ShuttingDown | InstanceState::Terminated
    )
}

/// Classify the instances observed for one desired group (ours, carrying its group
/// tag, on its provider). `instances` may come in any order; the result is sorted.
pub fn classify_group<'a>(ctx: &GroupContext<'_>, instances: &[&'a Instance]) -> GroupDrift<'a> {
    let mut findings = Vec::new();
    let mut current = Vec::new();
    let mut replace = Vec::new();
    let mut hashes: BTreeMap<&Text, u32> = BTreeMap::new();
    let none = Text::from("(none)");
    let mut sorted: Vec<&'a Instance> = instances.to_vec();
    sorted.sort_unstable_by(|a, b| a.id.cmp(&b.id));

    for &instance in &sorted {
        if !counts(instance) {
            continue;
        }
        let tag = instance.spec_hash();
        *hashes
            .entry(instance.tags.get_text(tags::SPEC_HASH).unwrap_or(&none))
            .or_default() += 1;
        let is_current = tag.and_then(|t| t.parse::<SpecHash>().ok()) == Some(*ctx.hash);
        let (health, why) = member_health(instance, ctx.health, ctx.now);
        let mut removal = None;
        let group = Some(ctx.name);
        if !is_current {
            removal = Some(RemovalClass::Outdated);
            let mut f = Finding::instance(DriftKind::Outdated, group, ctx.provider, &instance.id);
            f.expected = Some(ctx.hash.to_string());
            f.observed = Some(tag.unwrap_or("(none)").to_owned());
            f.reason = match tag {
                Some(t) => format!(
                    "launched from generation {}, desired is {}",
                    short(t),
                    ctx.hash.short()
                ),
                None => "has no phoenix:spec-hash tag".to_owned(),
            };
            findings.push(f);
        } else {
            for (field, expected, observed) in modified_fields(instance, ctx.template) {
                removal = Some(RemovalClass::Modified);
                let mut f =
                    Finding::instance(DriftKind::Modified, group, ctx.provider, &instance.id);
                f.reason = format!(
                    "{field} changed out of band: expected {expected}, observed {observed}"
                );
                f.field = Some(field);
                f.expected = Some(expected);
                f.observed = Some(observed);
                findings.push(f);
            }
        }
        if let Some(why) = why {
            removal = Some(RemovalClass::Unhealthy);
            let mut f = Finding::instance(DriftKind::Unhealthy, group, ctx.provider, &instance.id);
            f.observed = Some(format!("{}/{}", instance.state, instance.health));
            f.reason = why;
            findings.push(f);
        }
        let member = Member {
            instance,
            health,
            removal,
        };
        if removal.is_some() {
            replace.push(member);
        } else {
            current.push(member);
        }
    }

    let total = u32::try_from(current.len() + replace.len()).unwrap_or(u32::MAX);
    let mut head = Vec::new();
    if total < ctx.replicas && ctx.inventory_complete {
        let mut f = Finding::group_count(
            DriftKind::Missing,
            ctx.name,
            ctx.provider,
            ctx.replicas - total,
        );
        f.reason = format!("{total} of {} replicas exist", ctx.replicas);
        head.push(f);
    }
    if total > ctx.replicas {
        let mut f = Finding::group_count(
            DriftKind::Surplus,
            ctx.name,
            ctx.provider,
            total - ctx.replicas,
        );
        f.reason = format!("{total} instances exist for {} replicas", ctx.replicas);
        head.push(f);
    }
    head.append(&mut findings);
    replace.sort_unstable_by(|a, b| a.removal_key().cmp(&b.removal_key()));

    GroupDrift {
        findings: head,
        current,
        replace,
        observed_hashes: hashes
            .into_iter()
            .map(|(hash, count)| HashCount {
                hash: hash.clone(),
                count,
            })
            .collect(),
    }
}

/// The first 12 hex digits of a hash tag, for reasons; the text itself when it is not
/// a v1 hash.
fn short(tag: &str) -> String {
    match tag.parse::<SpecHash>() {
        Ok(h) => h.short(),
        Err(_) => tag.to_owned(),
    }
}
