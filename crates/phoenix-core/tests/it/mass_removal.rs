//! Issue 17, defect 7: the mass-removal hold is counted from the revision (groups removed
//! from Git), so an incomplete inventory cannot hide a removal, and it sticks until every
//! removed group is back in Git or gone from a complete inventory, so a prune deferred by
//! the budget, or left once part of the removal is done, never runs without approval.

use phoenix_core::model::Inventory;
use phoenix_core::plan::{PlanApproval, PlanOutcome};
use phoenix_core::spec::ParsedGroup;

use crate::planner_support::{Pass, cur, group, inventory, run};

const NAMES: [&str; 10] = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];

fn groups(names: &[&str]) -> Vec<ParsedGroup> {
    names.iter().map(|n| group(n, 1, "")).collect()
}

/// One running instance per named group.
fn fleet(names: &[&str]) -> Vec<crate::planner_support::I> {
    names
        .iter()
        .map(|n| cur(&format!("i-{n}"), &group(n, 1, "")))
        .collect()
}

fn incomplete(inventory: Inventory) -> Inventory {
    Inventory {
        complete: false,
        ..inventory
    }
}

/// The next pass: the memory of `outcome` carried over.
fn after(outcome: PlanOutcome) -> Pass {
    Pass {
        memory: outcome.memory,
        ..Pass::default()
    }
}

/// Plans of the pass that terminate something, with their approval.
fn prunes(outcome: &PlanOutcome) -> Vec<(String, Option<PlanApproval>)> {
    outcome
        .document
        .groups
        .iter()
        .filter(|g| g.desired_hash.is_none() && !g.steps.is_empty())
        .map(|g| (g.name.as_str().to_owned(), g.approval))
        .collect()
}

#[test]
fn a_removal_hidden_by_an_incomplete_inventory_is_held() {
    let first = run(
        &Pass::default(),
        &groups(&NAMES),
        &[inventory(fleet(&NAMES))],
    );
    assert!(first.document.hold.is_none());
    // The revision removes 6 of 10 groups while the provider answers only in part: no
    // orphan is visible, but Git says what went.
    let kept = &NAMES[..4];
    let second = run(
        &after(first),
        &groups(kept),
        &[incomplete(inventory(fleet(kept)))],
    );
    let hold = second
        .document
        .hold
        .as_ref()
        .expect("held from the revision");
    assert_eq!(hold.removed_groups, ["e", "f", "g", "h", "i", "j"]);
    assert!(hold.reason.contains("6 of 10"), "{}", hold.reason);
    assert!(
        second
            .document
            .groups
            .iter()
            .all(|g| g.approval.is_none() || g.approval == Some(PlanApproval::Held))
    );
}

#[test]
fn the_hold_sticks_while_removed_groups_have_instances() {
    let kept = &NAMES[..4];
    let first = run(
        &Pass::default(),
        &groups(&NAMES),
        &[inventory(fleet(&NAMES))],
    );
    let second = run(&after(first), &groups(kept), &[inventory(fleet(&NAMES))]);
    assert!(second.document.hold.is_some());
    // Three removed groups were approved and pruned; three are left: 3 of 7 is under
    // max_prune_fraction, but the hold stays, so the rest is not pruned unapproved.
    let left = ["a", "b", "c", "d", "h", "i", "j"];
    let third = run(&after(second), &groups(kept), &[inventory(fleet(&left))]);
    let hold = third.document.hold.as_ref().expect("still held");
    assert_eq!(hold.removed_groups, ["h", "i", "j"]);
    let pruned = prunes(&third);
    assert_eq!(pruned.len(), 3, "{pruned:?}");
    assert!(
        pruned
            .iter()
            .all(|(_, approval)| *approval == Some(PlanApproval::Held)),
        "{pruned:?}"
    );
    // An incomplete inventory cannot show the rest gone: still held.
    let fourth = run(
        &after(third),
        &groups(kept),
        &[incomplete(inventory(fleet(kept)))],
    );
    assert!(fourth.document.hold.is_some());
    // A complete inventory without them lifts it.
    let fifth = run(&after(fourth), &groups(kept), &[inventory(fleet(kept))]);
    assert!(fifth.document.hold.is_none(), "{:?}", fifth.document.hold);
    assert!(fifth.memory.hold.is_none());
}

#[test]
fn the_hold_lifts_when_the_groups_come_back() {
    let kept = &NAMES[..4];
    let first = run(
        &Pass::default(),
        &groups(&NAMES),
        &[inventory(fleet(&NAMES))],
    );
    let second = run(&after(first), &groups(kept), &[inventory(fleet(&NAMES))]);
    assert!(second.document.hold.is_some());
    let back = run(&after(second), &groups(&NAMES), &[inventory(fleet(&NAMES))]);
    assert!(back.document.hold.is_none());
    assert!(prunes(&back).is_empty());
}

#[test]
fn a_small_removal_is_not_held() {
    let first = run(
        &Pass::default(),
        &groups(&NAMES),
        &[inventory(fleet(&NAMES))],
    );
    let second = run(
        &after(first),
        &groups(&NAMES[..8]),
        &[incomplete(inventory(fleet(&NAMES[..8])))],
    );
    assert!(
        second.document.hold.is_none(),
        "2 of 10 is under the fraction"
    );
}
