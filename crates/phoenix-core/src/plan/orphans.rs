//! Phase 4 of a pass: orphans. [`remember`] counts consecutive complete sightings of
//! each orphaned instance ([`PlanMemory`]); [`plan_prunes`] reports every orphaned group
//! after the desired ones and, with `prune: true`, terminates the orphans seen twice in
//! a row, within what is left of the budget.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::budget::Ledger;
use super::groups::ProviderTexts;
use super::holds::{self, Approve};
use super::partition::{Orphans, Partition};
use super::{GroupReport, GroupStatus, OrphanSighting, PlanInput, PlanMemory, Step};
use crate::drift::{self, HashCount};
use crate::model::Instance;
use crate::spec::GroupName;
use crate::text::Text;

/// The memory for the next pass: each orphan's consecutive complete sightings.
pub(super) fn remember(orphans: &Orphans<'_>, before: &PlanMemory) -> PlanMemory {
    let previous: HashMap<(&str, &str), u32> = before
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
    for ((group, provider), list) in orphans {
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
    memory
}

/// What [`plan_prunes`] works from.
pub(super) struct PruneContext<'p, 'a> {
    pub input: &'p PlanInput<'a>,
    pub parts: &'p Partition<'a>,
    pub memory: &'p PlanMemory,
    pub held: bool,
}

/// One report per orphaned group, sorted by group and provider, with its prune plan.
pub(super) fn plan_prunes(
    ctx: &PruneContext<'_, '_>,
    budget: &mut Ledger,
    providers: &mut ProviderTexts,
    reports: &mut Vec<GroupReport>,
) {
    let eligible: HashSet<(&str, &str)> = ctx
        .memory
        .orphans
        .iter()
        .filter(|o| o.observations >= 2)
        .map(|o| (o.provider.as_str(), o.instance_id.as_str()))
        .collect();
    let windows = crate::window::Windows::compile_or_closed(&ctx.input.config.windows);
    let lifted = crate::window::lasting_override(ctx.input.memory, ctx.input.now).map(|o| o.until);
    let mut windows = windows.at(ctx.input.now, lifted);
    for ((group, provider), list) in &ctx.parts.orphans {
        let mut sorted: Vec<&Instance> = list.clone();
        sorted.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        let moved = ctx.parts.desired.contains_key(group);
        let mut report = GroupReport {
            name: GroupName::new(*group).expect("ownership admits only valid group names"),
            provider: providers.get(provider),
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
        let window = windows.state(group);
        if ctx.input.config.prune && window.blocked {
            report.notes.push(crate::window::held_note("prune", window));
        } else if ctx.input.config.prune {
            let ready: Vec<&Instance> = sorted
                .iter()
                .copied()
                .filter(|i| eligible.contains(&(*provider, i.id.as_str())))
                .collect();
            prune(ctx, &ready, sorted.len() - ready.len(), budget, &mut report);
        } else {
            report
                .notes
                .push("reconcile.prune is false: orphans are reported, never terminated".into());
        }
        reports.push(report);
    }
}

/// Plan the termination of the `ready` orphans of one group, within the budget.
fn prune(
    ctx: &PruneContext<'_, '_>,
    ready: &[&Instance],
    waiting: usize,
    budget: &mut Ledger,
    report: &mut GroupReport,
) {
    if waiting > 0 {
        report.notes.push(format!(
            "{waiting} orphan(s) are pruned only after a second consecutive complete observation"
        ));
    }
    let granted = budget.grant(ready.len(), report);
    if granted > 0 {
        let steps = vec![Step::Terminate {
            instance_ids: ready[..granted].iter().map(|i| i.id.to_string()).collect(),
        }];
        holds::approve(Approve {
            revision: ctx.input.revision,
            target: None,
            approval: holds::approval(ctx.held, false),
            steps,
            report,
        });
    }
}

/// Spec hashes seen on orphaned instances, with counts, sorted by hash.
pub(super) fn observed_hashes(instances: &[&Instance]) -> Vec<HashCount> {
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
