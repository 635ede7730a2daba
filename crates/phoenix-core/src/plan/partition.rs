//! Phase 1 of a pass: sort every observed instance into a desired group, an orphan, or
//! unmanaged, and count the fleet the budget is a fraction of.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use super::PlanInput;
use crate::drift::{self, Finding, Ownership};
use crate::model::Instance;
use crate::spec::ParsedGroup;

/// Orphaned instances by `(group tag, provider)`, only from complete inventories.
pub(super) type Orphans<'a> = BTreeMap<(&'a str, &'a str), Vec<&'a Instance>>;

/// The observation sorted by whom it belongs to.
pub(super) struct Partition<'a> {
    /// Desired groups sorted by name.
    pub order: Vec<&'a ParsedGroup>,
    /// A desired group's name to its position in `order` (names are unique: checked).
    pub desired: FxHashMap<&'a str, usize>,
    /// Each inventoried provider and whether its inventory is complete.
    pub complete: BTreeMap<&'a str, bool>,
    /// The instances of each desired group, by position in `order`.
    pub members: Vec<Vec<&'a Instance>>,
    /// Our instances whose group is not desired on their provider.
    pub orphans: Orphans<'a>,
    /// Instances in scope that are not ours, sorted by provider and id.
    pub unmanaged: Vec<Finding>,
    /// Our instances observed, across providers.
    pub fleet: u32,
}

impl<'a> Partition<'a> {
    /// Groups that still have our instances on a complete inventory but are gone from
    /// the desired state, sorted.
    pub fn removed_groups(&self) -> Vec<&'a str> {
        let mut removed: Vec<&str> = self
            .orphans
            .keys()
            .map(|(g, _)| *g)
            .filter(|g| !self.desired.contains_key(g))
            .collect();
        removed.dedup();
        removed
    }
}

/// Sort the input's observation.
pub(super) fn partition<'a>(input: &PlanInput<'a>) -> Partition<'a> {
    let mut order: Vec<&ParsedGroup> = input.groups.iter().collect();
    order.sort_unstable_by(|a, b| a.group.name().cmp(b.group.name()));
    let mut desired: FxHashMap<&str, usize> =
        FxHashMap::with_capacity_and_hasher(order.len(), rustc_hash::FxBuildHasher);
    for (i, g) in order.iter().enumerate() {
        desired.insert(g.group.name().as_str(), i);
    }

    // Inventories by provider (one each: checked).
    let complete: BTreeMap<&str, bool> = input
        .inventories
        .iter()
        .map(|inv| (inv.provider.as_str(), inv.complete))
        .collect();

    let mut members: Vec<Vec<&Instance>> = vec![Vec::new(); order.len()];
    let mut orphans: Orphans<'a> = BTreeMap::new();
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
    Partition {
        order,
        desired,
        complete,
        members,
        orphans,
        unmanaged,
        fleet,
    }
}

/// Providers whose inventory was incomplete or absent (a desired group names a provider
/// that has no inventory), sorted.
pub(super) fn incomplete_providers(input: &PlanInput<'_>, parts: &Partition<'_>) -> Vec<String> {
    let mut out: Vec<String> = parts
        .complete
        .iter()
        .filter(|(_, ok)| !**ok)
        .map(|(p, _)| (*p).to_owned())
        .collect();
    for g in input.groups {
        let p = g.group.spec.provider.as_str();
        if !parts.complete.contains_key(p) {
            out.push(p.to_owned());
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}
