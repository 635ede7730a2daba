//! Data-driven planner cases (issue 5): each case states the desired groups and the
//! observed fleet, and `check` compares the rendered plan with a committed snapshot
//! under `tests/snapshots/`. The rendering is the same text `phoenix plan` prints, so
//! the snapshots read like the CLI output a user would see.

#![allow(clippy::unwrap_used)]

use crate::planner_support::*;
use phoenix_core::model::{InstanceHealth, InstanceState, Inventory};
use phoenix_core::plan::{FailedGeneration, GroupStatus, PlanApproval};
use phoenix_core::render::{RenderOptions, render_text};
use phoenix_core::spec::ParsedGroup;
use phoenix_core::tags;

/// Plan `desired` against a complete inventory of `observed` with open caps and
/// compare the rendered text with the snapshot named `case`.
fn check(case: &str, desired: &[ParsedGroup], observed: Vec<I>) {
    check_with(case, &Pass::default(), desired, &[inventory(observed)]);
}

/// [`check`] with explicit pass settings and inventories.
fn check_with(case: &str, pass: &Pass, desired: &[ParsedGroup], observed: &[Inventory]) {
    let outcome = run(pass, desired, observed);
    let text = render_text(
        &outcome.document,
        RenderOptions {
            colour: false,
            show_in_sync: true,
        },
    );
    insta::assert_snapshot!(case, text);
}

#[test]
fn new_group_launches_every_replica() {
    let web = group("web", 3, "");
    check("new_group", &[web], vec![]);
}

#[test]
fn fleet_in_sync_plans_nothing() {
    let web = group("web", 2, "");
    let observed = vec![cur("i-1", &web), cur("i-2", &web)];
    check("in_sync", &[web], observed);
}

#[test]
fn rolling_defaults_replace_one_at_a_time() {
    let web = group("web", 3, "");
    let observed = vec![old("i-1", &web), old("i-2", &web), old("i-3", &web)];
    check("rolling_defaults", &[web], observed);
}

#[test]
fn rolling_percentages_round_surge_up_and_unavailable_down() {
    // 25% of 10: surge ceil(2.5) = 3, unavailable floor(2.5) = 2.
    let web = group(
        "web",
        10,
        "  rollout: {maxSurge: \"25%\", maxUnavailable: \"25%\"}",
    );
    let observed = (0..10).map(|i| old(&format!("i-{i:02}"), &web)).collect();
    check("rolling_percentages", &[web], observed);
}

#[test]
fn rolling_without_surge_uses_unavailability() {
    let web = group("web", 3, "  rollout: {maxSurge: 0, maxUnavailable: 1}");
    let observed = vec![old("i-1", &web), old("i-2", &web), old("i-3", &web)];
    check("rolling_no_surge", &[web], observed);
}

#[test]
fn group_of_one_launches_before_it_terminates() {
    let solo = group("solo", 1, "  rollout: {maxSurge: 0, maxUnavailable: 1}");
    let observed = vec![old("i-1", &solo)];
    check("group_of_one", &[solo], observed);
}

#[test]
fn unavailability_never_reaches_the_last_healthy_instance() {
    let web = group(
        "web",
        2,
        "  rollout: {maxSurge: 0, maxUnavailable: \"100%\"}",
    );
    let observed = vec![old("i-1", &web), old("i-2", &web)];
    check("last_healthy", &[web], observed);
}

#[test]
fn blue_green_launches_a_full_generation_then_bakes() {
    let web = group("web", 3, "  rollout: {strategy: blue-green, bake: 5m}");
    let observed = vec![old("i-1", &web), old("i-2", &web), old("i-3", &web)];
    check("blue_green", &[web], observed);
}

#[test]
fn canary_starts_with_one_instance_and_bakes_each_batch() {
    let web = group(
        "web",
        4,
        "  rollout: {strategy: canary, maxSurge: 2, bake: 1m}",
    );
    let observed = (1..=4).map(|i| old(&format!("i-{i}"), &web)).collect();
    check("canary", &[web], observed);
}

#[test]
fn out_of_band_changes_are_modified_and_replaced() {
    let web = group("web", 4, "");
    let observed = vec![
        cur("i-1", &web).itype("t3.large"),
        cur("i-2", &web).subnet(Some("subnet-z")),
        // Same set, other order: not drift.
        cur("i-3", &web).sgs(&["sg-2", "sg-1"]),
        cur("i-4", &web).sgs(&["sg-1"]).image("ami-hand-built"),
    ];
    check("modified", &[web], observed);
}

#[test]
fn unhealthy_means_failing_past_grace_stopped_or_silent_past_deadline() {
    let web = group("web", 5, "  health: {grace: 30s, deadline: 5m}");
    let observed = vec![
        cur("i-1", &web).health(InstanceHealth::Unhealthy).age(60),
        // Failing but still within grace: not drift yet.
        cur("i-2", &web).health(InstanceHealth::Unhealthy).age(10),
        cur("i-3", &web).state(InstanceState::Stopped),
        cur("i-4", &web).health(InstanceHealth::Unknown).age(600),
        cur("i-5", &web),
    ];
    check("unhealthy", &[web], observed);
}

#[test]
fn surplus_terminates_starting_then_oldest_and_never_launches() {
    let web = group("web", 2, "");
    let observed = vec![
        cur("i-a", &web).age(100),
        cur("i-b", &web).age(9000),
        cur("i-c", &web).health(InstanceHealth::Unknown).age(5),
        cur("i-d", &web).age(500),
    ];
    check("surplus", &[web], observed);
}

#[test]
fn scaling_up_only_launches() {
    let web = group("web", 5, "");
    let observed = vec![cur("i-1", &web), cur("i-2", &web), cur("i-3", &web)];
    check("scale_up", &[web], observed);
}

#[test]
fn outdated_and_missing_together() {
    let web = group("web", 3, "");
    let observed = vec![old("i-1", &web), cur("i-2", &web)];
    check("outdated_and_missing", &[web], observed);
}

#[test]
fn starting_instances_are_waited_for_before_healthy_old_ones_go() {
    let web = group("web", 2, "");
    let observed = vec![
        cur("i-new1", &web).health(InstanceHealth::Unknown).age(5),
        cur("i-new2", &web)
            .state(InstanceState::Pending)
            .health(InstanceHealth::Unknown)
            .age(5),
        old("i-old1", &web),
        old("i-old2", &web),
    ];
    check("wait_for_starting", &[web], observed);
}

#[test]
fn zero_replicas_terminates_everything() {
    let web = group("web", 0, "");
    let observed = vec![cur("i-1", &web), old("i-2", &web)];
    check("zero_replicas", &[web], observed);
}

#[test]
fn incomplete_inventory_replaces_one_for_one_but_never_fills_up() {
    let web = group("web", 3, "");
    let mut inv = inventory(vec![old("i-1", &web)]);
    inv.complete = false;
    inv.error = Some("throttled on page 2".into());
    check_with("incomplete_inventory", &Pass::default(), &[web], &[inv]);
}

#[test]
fn absent_inventory_counts_as_incomplete() {
    let web = group("web", 3, "");
    check_with("absent_inventory", &Pass::default(), &[web], &[]);
}

#[test]
fn orphans_wait_for_a_second_complete_observation() {
    let web = group("web", 1, "");
    let gone = group("api", 1, "");
    let observed = vec![cur("i-1", &web), cur("i-9", &gone)];
    let first = run(
        &Pass::default(),
        std::slice::from_ref(&web),
        &[inventory(observed.clone())],
    );
    assert!(
        first.document.groups[1].steps.is_empty(),
        "first sighting prunes nothing"
    );
    assert_eq!(first.memory.orphans.len(), 1);
    let pass = Pass {
        memory: first.memory,
        ..Pass::default()
    };
    check_with(
        "orphan_second_sighting",
        &pass,
        &[web],
        &[inventory(observed)],
    );
}

#[test]
fn an_incomplete_pass_resets_the_orphan_count() {
    let web = group("web", 1, "");
    let gone = group("api", 1, "");
    let observed = vec![cur("i-1", &web), cur("i-9", &gone)];
    let first = run(
        &Pass::default(),
        std::slice::from_ref(&web),
        &[inventory(observed.clone())],
    );
    let mut incomplete = inventory(observed.clone());
    incomplete.complete = false;
    let second = run(
        &Pass {
            memory: first.memory,
            ..Pass::default()
        },
        std::slice::from_ref(&web),
        &[incomplete],
    );
    assert!(second.memory.orphans.is_empty(), "{:?}", second.memory);
    assert!(
        second
            .document
            .groups
            .iter()
            .all(|g| g.name.as_str() != "api")
    );
    let third = run(
        &Pass {
            memory: second.memory,
            ..Pass::default()
        },
        std::slice::from_ref(&web),
        &[inventory(observed)],
    );
    assert!(third.document.groups[1].steps.is_empty());
}

#[test]
fn orphans_are_reported_but_kept_without_prune() {
    let web = group("web", 1, "");
    let gone = group("api", 1, "");
    let observed = vec![cur("i-1", &web), cur("i-9", &gone)];
    let mut pass = Pass::default();
    pass.config.prune = false;
    let first = run(
        &pass,
        std::slice::from_ref(&web),
        &[inventory(observed.clone())],
    );
    pass.memory = first.memory;
    check_with("orphan_no_prune", &pass, &[web], &[inventory(observed)]);
}

#[test]
fn removing_most_groups_holds_the_revision() {
    let web = group("web", 1, "");
    let a = group("a", 1, "");
    let b = group("b", 1, "");
    let observed = vec![old("i-1", &web), cur("i-a", &a), cur("i-b", &b)];
    let first = run(
        &Pass::default(),
        std::slice::from_ref(&web),
        &[inventory(observed.clone())],
    );
    let pass = Pass {
        memory: first.memory,
        ..Pass::default()
    };
    check_with("mass_removal_hold", &pass, &[web], &[inventory(observed)]);
}

#[test]
fn removing_every_group_is_held() {
    let a = group("a", 1, "");
    let observed = vec![cur("i-a", &a)];
    let first = run(&Pass::default(), &[], &[inventory(observed.clone())]);
    let pass = Pass {
        memory: first.memory,
        ..Pass::default()
    };
    let outcome = run(&pass, &[], &[inventory(observed)]);
    let hold = outcome.document.hold.expect("held");
    assert_eq!(hold.removed_groups, vec!["a".to_owned()]);
    assert_eq!(
        outcome.document.groups[0].approval,
        Some(PlanApproval::Held)
    );
    assert_eq!(
        outcome.document.groups[0].status,
        GroupStatus::AwaitingApproval
    );
}

#[test]
fn budget_goes_to_failing_groups_first_then_by_name() {
    let a = group("a", 2, "");
    let b = group("b", 2, "");
    let c = group("c", 2, "");
    let observed = vec![
        old("a-1", &a),
        old("a-2", &a),
        old("b-1", &b),
        cur("b-2", &b),
        cur("c-1", &c).state(InstanceState::Stopped),
        cur("c-2", &c),
    ];
    let mut pass = Pass::default();
    pass.config.max_replacements = 2;
    check_with("budget_order", &pass, &[a, b, c], &[inventory(observed)]);
}

#[test]
fn the_fraction_cap_wins_when_smaller() {
    let web = group("web", 8, "  rollout: {maxSurge: 8}");
    let observed = (0..8).map(|i| old(&format!("i-{i}"), &web)).collect();
    let mut pass = Pass::default();
    pass.config.max_replacements = 10;
    pass.config.max_replacement_fraction = 0.25; // ceil(0.25 * 8) = 2
    check_with("budget_fraction", &pass, &[web], &[inventory(observed)]);
}

#[test]
fn a_failed_generation_is_not_replanned_until_a_new_commit() {
    let web = group("web", 2, "");
    let observed = vec![old("i-1", &web), old("i-2", &web)];
    let failure = FailedGeneration {
        group: "web".into(),
        hash: web.hash,
        commit: REVISION.into(),
    };
    let pass = Pass {
        failed: vec![failure],
        ..Pass::default()
    };
    check_with(
        "failed_generation",
        &pass,
        std::slice::from_ref(&web),
        &[inventory(observed.clone())],
    );
    let next = Pass {
        revision: "newer".into(),
        ..pass
    };
    let outcome = run(&next, &[web], &[inventory(observed)]);
    assert_eq!(outcome.document.groups[0].status, GroupStatus::Planned);
}

#[test]
fn manual_approval_and_suspend() {
    let manual = group("manual", 1, "  approval: manual");
    let paused = group("paused", 1, "  suspend: true");
    let observed = vec![old("i-m", &manual), old("i-p", &paused)];
    check("approval_and_suspend", &[manual, paused], observed);
}

#[test]
fn unmanaged_instances_are_reported_and_never_touched() {
    let web = group("web", 1, "");
    let observed = vec![
        cur("i-1", &web),
        old("i-other", &web).tag(tags::OWNER, Some("someone-else")),
        cur("i-nogroup", &web).tag(tags::GROUP, None),
        cur("i-badgroup", &web).tag(tags::GROUP, Some("Not A Name")),
    ];
    check("unmanaged", &[web], observed);
}

#[test]
fn a_group_moved_to_another_provider_orphans_its_old_instances() {
    let web = group("web", 1, "");
    let mut elsewhere = inventory(vec![cur("i-old-cloud", &web)]);
    elsewhere.provider = "gcp".into();
    let here = inventory(vec![cur("i-1", &web)]);
    check_with(
        "moved_provider",
        &Pass::default(),
        &[web],
        &[elsewhere, here],
    );
}

#[test]
fn shutting_down_instances_are_ignored() {
    let web = group("web", 1, "");
    let observed = vec![
        cur("i-1", &web),
        old("i-2", &web).state(InstanceState::ShuttingDown),
    ];
    let outcome = run(
        &Pass::default(),
        std::slice::from_ref(&web),
        &[inventory(observed)],
    );
    assert!(!outcome.document.changes);
    assert!(!outcome.document.drifted);
}

#[test]
fn json_document_shape() {
    let web = group("web", 2, "  rollout: {bake: 30s}");
    let observed = vec![old("i-1", &web), cur("i-2", &web).itype("t3.large")];
    let outcome = run(&Pass::default(), &[web], &[inventory(observed)]);
    let json = serde_json::to_string_pretty(&outcome.document).unwrap();
    insta::assert_snapshot!("json_document", json);
    let back: phoenix_core::plan::PlanDocument = serde_json::from_str(&json).unwrap();
    assert_eq!(back, outcome.document);
}

/// The JSON of every kind of group report, pinned before the report's in-memory layout
/// changes (shared name and provider text, rare fields grouped): an in-sync group, a
/// suspended one, one whose terminations the budget defers (notes, `deferred`, steps),
/// and an orphaned group that is reported but never pruned.
#[test]
fn json_of_every_report_shape() {
    let web = group("web", 2, "");
    let api = group("api", 2, "");
    let paused = group("paused", 1, "  suspend: true");
    let gone = group("gone", 1, "");
    let observed = vec![
        cur("i-1", &web),
        cur("i-2", &web),
        old("i-3", &api),
        old("i-4", &api),
        old("i-5", &paused),
        cur("i-9", &gone),
    ];
    let pass = Pass {
        config: phoenix_core::config::ReconcileConfig {
            max_replacements: 1,
            prune: false,
            ..open_config()
        },
        ..Pass::default()
    };
    let outcome = run(&pass, &[web, api, paused], &[inventory(observed)]);
    let json = serde_json::to_string_pretty(&outcome.document).unwrap();
    insta::assert_snapshot!("json_every_report_shape", json);
    let back: phoenix_core::plan::PlanDocument = serde_json::from_str(&json).unwrap();
    assert_eq!(back, outcome.document);
}

/// `plan::check` refuses exactly what `plan` refuses, so the daemon can release its last
/// plan document after a passing check (a refused input keeps the last document).
#[test]
fn check_refuses_what_plan_refuses() {
    use phoenix_core::plan::{self, PlanError};
    let pass = Pass::default();
    let web = group("web", 1, "");
    let api = group("api", 1, "");
    let verdicts = |desired: &[ParsedGroup], observed: &[Inventory]| {
        let input = input(&pass, desired, observed);
        (
            plan::check(&input).map(|_| ()),
            plan::plan(&input).map(|_| ()),
        )
    };
    let fine = [inventory(vec![cur("i-1", &web), cur("i-2", &api)])];
    assert!(matches!(
        verdicts(&[web.clone(), api.clone()], &fine),
        (Ok(()), Ok(()))
    ));
    let twice = [inventory(vec![cur("i-1", &web), cur("i-1", &web)])];
    assert!(matches!(
        verdicts(std::slice::from_ref(&web), &twice),
        (
            Err(PlanError::DuplicateInstance { .. }),
            Err(PlanError::DuplicateInstance { .. })
        )
    ));
    // The id named is the first one to repeat an earlier one, in inventory order.
    let repeats = [inventory(vec![
        cur("i-1", &web),
        cur("i-2", &web),
        cur("i-3", &web),
        cur("i-2", &web),
        cur("i-1", &web),
    ])];
    match verdicts(std::slice::from_ref(&web), &repeats).0 {
        Err(PlanError::DuplicateInstance { instance_id, .. }) => assert_eq!(instance_id, "i-2"),
        other => panic!("expected a duplicate instance, got {other:?}"),
    }
    let two_inventories = [inventory(vec![]), inventory(vec![])];
    assert!(matches!(
        verdicts(std::slice::from_ref(&web), &two_inventories),
        (
            Err(PlanError::DuplicateInventory { .. }),
            Err(PlanError::DuplicateInventory { .. })
        )
    ));
    let named_twice = [web.clone(), web.clone()];
    assert!(matches!(
        verdicts(&named_twice, &fine),
        (
            Err(PlanError::DuplicateGroup { .. }),
            Err(PlanError::DuplicateGroup { .. })
        )
    ));
}
