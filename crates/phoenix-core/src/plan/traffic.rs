//! Traffic in the planner (design section 11): for a group with `spec.traffic`, which of
//! its instances are in service in every target group (only those count for the healthy
//! floor), which current instances are `unregistered` (registered again, never
//! replaced), and the steps that move traffic around a rollout's launches and
//! terminations: `register` and `wait_in_service` after an instance joins,
//! `deregister` and `wait_drained` before it is terminated. Targets of a group's target
//! groups that are not our instances are `unmanaged`.

use std::time::Duration;

use rustc_hash::FxHashSet;

use super::partition::Partition;
use super::{GroupReport, GroupStatus, PlanInput, Step};
use crate::drift::{self, Finding, GroupContext, GroupDrift, MemberHealth, Ownership};
use crate::spec::Traffic;
use crate::traffic::Serving;

/// What the planner knows of one traffic group's target groups this pass.
#[derive(Debug)]
pub(super) struct GroupTraffic<'a> {
    /// `spec.traffic.targetGroups`.
    pub target_groups: Vec<String>,
    /// `spec.traffic.drain`.
    pub drain: Option<Duration>,
    /// `health.deadline`: how long a registered instance may take to get in service.
    pub deadline: Duration,
    /// Members in service in every target group.
    in_service: FxHashSet<&'a str>,
    /// Healthy current members not registered in some target group (`unregistered`),
    /// sorted: registered first thing in the plan.
    pub register: Vec<String>,
    /// Healthy current members registered everywhere but not in service yet, sorted:
    /// waited for when nothing else can progress.
    pub joining: Vec<String>,
    /// Whether every target group was read completely. When not, nothing is
    /// deregistered or terminated this pass (what is in service is not known).
    pub known: bool,
}

impl GroupTraffic<'_> {
    /// Whether a member counts for the floor: in service, or about to be registered
    /// (the plan starts with that).
    pub fn serving(&self, id: &str) -> bool {
        self.in_service.contains(id)
            || self
                .register
                .binary_search_by(|r| r.as_str().cmp(id))
                .is_ok()
    }

    /// The steps a plan starts with: `unregistered` members registered again and waited
    /// in service. Returns the members to wait in service when nothing else progresses.
    pub fn prelude(&self, steps: &mut Vec<Step>) -> Vec<String> {
        if !self.register.is_empty() {
            self.join(steps, self.register.clone());
        }
        self.joining.clone()
    }

    /// `register` then `wait_in_service` for `ids` (empty: the plan's new instances).
    pub fn join(&self, steps: &mut Vec<Step>, ids: Vec<String>) {
        steps.push(Step::Register {
            instance_ids: ids.clone(),
            target_groups: self.target_groups.clone(),
        });
        self.wait_in_service(steps, ids);
    }

    /// `wait_in_service` for `ids` (empty: the plan's new instances).
    pub fn wait_in_service(&self, steps: &mut Vec<Step>, ids: Vec<String>) {
        steps.push(Step::WaitInService {
            instance_ids: ids,
            target_groups: self.target_groups.clone(),
            deadline: self.deadline,
        });
    }

    /// `deregister` then `wait_drained` for a batch about to be terminated (sorted).
    pub fn leave(&self, steps: &mut Vec<Step>, batch: &[String]) {
        steps.push(Step::Deregister {
            instance_ids: batch.to_vec(),
            target_groups: self.target_groups.clone(),
        });
        steps.push(Step::WaitDrained {
            instance_ids: batch.to_vec(),
            target_groups: self.target_groups.clone(),
            drain: self.drain,
        });
    }
}

/// Observe a traffic group's members in its target groups: add `unregistered` findings
/// to the report (and make it drifted) for healthy current members launched at least
/// `health.deadline` ago, note target groups that could not be read.
pub(super) fn observe<'a>(
    input: &PlanInput<'_>,
    ctx: &GroupContext<'_>,
    traffic: &Traffic,
    drift: &GroupDrift<'a>,
    report: &mut GroupReport,
) -> GroupTraffic<'a> {
    let target_groups = traffic.target_group_names();
    let view = input.traffic;
    let mut known = true;
    for tg in &target_groups {
        match view.get(ctx.provider, tg) {
            Some(read) if read.complete => {}
            Some(read) => {
                known = false;
                report.notes.push(format!(
                    "target group {tg} could not be read ({}): no instance counts as in service and none is deregistered",
                    read.error.as_deref().unwrap_or("incomplete")
                ));
            }
            None => {
                known = false;
                report.notes.push(format!(
                    "target group {tg} was not read this pass: no instance counts as in service and none is deregistered"
                ));
            }
        }
    }
    let mut out = GroupTraffic {
        target_groups,
        drain: traffic.drain,
        deadline: ctx.health.deadline,
        in_service: FxHashSet::default(),
        register: Vec::new(),
        joining: Vec::new(),
        known,
    };
    if !known {
        return out;
    }
    for m in drift.current.iter().chain(&drift.replace) {
        let id = m.instance.id.as_str();
        if view.serving(ctx.provider, &out.target_groups, id) == Serving::InService {
            out.in_service.insert(id);
        }
    }
    let mut findings = Vec::new();
    // An instance younger than `health.deadline` may be a plan's new instance between
    // its health gate and its `register` step: not drift yet (it does not count as in
    // service either).
    let settled = |m: &&drift::Member<'_>| {
        m.instance
            .launch_time
            .is_none_or(|t| ctx.now.duration_since(t).unwrap_or_default() >= ctx.health.deadline)
    };
    for m in drift
        .current
        .iter()
        .filter(|m| m.health == MemberHealth::Healthy)
        .filter(settled)
    {
        let id = m.instance.id.as_str();
        let mut unregistered = false;
        for (tg, state) in view.states(ctx.provider, &out.target_groups, id) {
            let state = state.expect("every target group of the group was read completely");
            if !state.is_registered() {
                unregistered = true;
                findings.push(drift::unregistered_finding(
                    ctx.name,
                    ctx.provider,
                    id,
                    &tg,
                    state,
                ));
            }
        }
        if unregistered {
            out.register.push(id.to_string());
        } else if !out.in_service.contains(id) {
            out.joining.push(id.to_string());
        }
    }
    out.register.sort_unstable();
    out.joining.sort_unstable();
    if !findings.is_empty() {
        add_findings(report, findings);
    }
    out
}

/// Merge per-instance findings into a report: group-level findings stay first, then
/// per instance by id (each instance's findings in the order they were found).
fn add_findings(report: &mut GroupReport, findings: Vec<Finding>) {
    report.drift.extend(findings);
    let split = report
        .drift
        .iter()
        .position(|f| f.instance_id.is_some())
        .unwrap_or(report.drift.len());
    report.drift[split..].sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    if matches!(report.status, GroupStatus::InSync | GroupStatus::Unknown) {
        report.status = GroupStatus::Drifted;
    }
}

/// Targets in the target groups of desired groups that are not instances we own (on
/// that provider): `unmanaged` findings, one per target and target group, sorted by
/// provider and id. Only complete reads are looked at.
pub(super) fn foreign_targets(input: &PlanInput<'_>, parts: &Partition<'_>) -> Vec<Finding> {
    if input.traffic.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for parsed in &parts.order {
        let spec = &parsed.group.spec;
        let Some(traffic) = spec.traffic.as_deref() else {
            continue;
        };
        let provider = spec.provider.as_str();
        let Some(inventory) = input.inventories.iter().find(|i| i.provider == provider) else {
            continue;
        };
        let ours: FxHashSet<&str> = inventory
            .instances
            .iter()
            .filter(|i| matches!(drift::ownership(i, input.owner), Ownership::Ours { .. }))
            .map(|i| i.id.as_str())
            .collect();
        for tg in traffic.target_groups.iter() {
            let Some(read) = input.traffic.get(provider, tg).filter(|r| r.complete) else {
                continue;
            };
            for target in read
                .targets
                .iter()
                .filter(|t| !ours.contains(t.id.as_str()))
            {
                out.push(drift::foreign_target_finding(
                    parsed.group.name().as_str(),
                    provider,
                    &target.id,
                    tg,
                ));
            }
        }
    }
    out
}

/// The document's unmanaged findings: the inventory's, then foreign targets not already
/// reported as unmanaged instances, sorted by provider and instance id.
pub(super) fn with_foreign(mut unmanaged: Vec<Finding>, foreign: Vec<Finding>) -> Vec<Finding> {
    if foreign.is_empty() {
        return unmanaged;
    }
    let known: FxHashSet<(String, String)> = unmanaged
        .iter()
        .filter_map(|f| Some((f.provider.clone(), f.instance_id.clone()?)))
        .collect();
    let mut seen = FxHashSet::default();
    for f in foreign {
        let key = (
            f.provider.clone(),
            f.instance_id.clone().unwrap_or_default(),
        );
        let tg = f.observed.clone().unwrap_or_default();
        if known.contains(&key) || !seen.insert((key, tg)) {
            continue;
        }
        unmanaged.push(f);
    }
    unmanaged.sort_by(|a, b| (&a.provider, &a.instance_id).cmp(&(&b.provider, &b.instance_id)));
    unmanaged
}
