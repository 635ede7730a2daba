//! Planner cases for groups behind load balancer target groups (issue 16, design
//! section 11): the traffic steps around launches and terminations for rolling,
//! blue-green and canary; the healthy floor counting instances in service in every
//! target group; `unregistered` drift registered again (never replaced); foreign targets
//! reported `unmanaged`; an unreadable target group never deregistering anything.
//! Snapshots are the rendered `phoenix plan` text, as in `planner_cases`.

#![allow(clippy::unwrap_used)]

use crate::planner_support::*;
use phoenix_core::drift::DriftKind;
use phoenix_core::plan::{GroupStatus, Step};
use phoenix_core::render::{RenderOptions, render_text};
use phoenix_core::spec::ParsedGroup;
use phoenix_core::traffic::{Target, TargetGroupHealth, TargetState, TrafficView};

const TG_A: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-a/0123456789abcdef";
const TG_B: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-b/fedcba9876543210";

/// A web group of `replicas` behind `TG_A` (and `TG_B` when `both`), with extra spec
/// lines.
fn web(replicas: u32, both: bool, extra: &str) -> ParsedGroup {
    let tgs = if both {
        format!("[\"{TG_A}\", \"{TG_B}\"]")
    } else {
        format!("[\"{TG_A}\"]")
    };
    group(
        "web",
        replicas,
        &format!("  traffic: {{targetGroups: {tgs}, drain: 2m}}\n{extra}"),
    )
}

/// A complete read of a target group.
fn read(tg: &str, targets: &[(&str, TargetState)]) -> TargetGroupHealth {
    TargetGroupHealth::complete(
        PROVIDER,
        tg,
        targets
            .iter()
            .map(|(id, state)| Target {
                id: (*id).into(),
                port: Some(80),
                state: *state,
            })
            .collect(),
    )
}

fn pass_with(reads: Vec<TargetGroupHealth>) -> Pass {
    let mut traffic = TrafficView::new();
    for r in reads {
        traffic.insert(r);
    }
    Pass {
        traffic,
        ..Pass::default()
    }
}

fn render(pass: &Pass, desired: &[ParsedGroup], observed: Vec<I>) -> (String, Vec<Step>) {
    let outcome = run(pass, desired, &[inventory(observed)]);
    let steps = outcome.document.groups[0].steps.clone();
    let text = render_text(
        &outcome.document,
        RenderOptions {
            colour: false,
            show_in_sync: true,
        },
    );
    (text, steps)
}

use TargetState::{Draining, Healthy, Initial};

#[test]
fn rolling_registers_new_and_drains_old_before_terminating() {
    let g = web(3, false, "");
    let pass = pass_with(vec![read(
        TG_A,
        &[("i-1", Healthy), ("i-2", Healthy), ("i-3", Healthy)],
    )]);
    let observed = vec![old("i-1", &g), old("i-2", &g), old("i-3", &g)];
    let (text, steps) = render(&pass, &[g], observed);
    insta::assert_snapshot!("traffic_rolling", text);
    // Every terminate is right after a deregister and a wait_drained of the same ids.
    for (i, step) in steps.iter().enumerate() {
        if let Step::Terminate { instance_ids } = step {
            assert!(
                matches!(&steps[i - 1], Step::WaitDrained { instance_ids: d, .. } if d == instance_ids)
            );
            assert!(
                matches!(&steps[i - 2], Step::Deregister { instance_ids: d, .. } if d == instance_ids)
            );
        }
    }
}

#[test]
fn blue_green_puts_the_new_generation_in_service_before_the_switch() {
    let g = web(2, true, "  rollout: {strategy: blue-green, bake: 1m}");
    let all = [("i-1", Healthy), ("i-2", Healthy)];
    let pass = pass_with(vec![read(TG_A, &all), read(TG_B, &all)]);
    let observed = vec![old("i-1", &g), old("i-2", &g)];
    let (text, steps) = render(&pass, &[g], observed);
    insta::assert_snapshot!("traffic_blue_green", text);
    let in_service = steps
        .iter()
        .position(|s| matches!(s, Step::WaitInService { .. }))
        .unwrap();
    let deregister = steps
        .iter()
        .position(|s| matches!(s, Step::Deregister { .. }))
        .unwrap();
    assert!(
        in_service < deregister,
        "traffic switch after the new generation is in service"
    );
}

#[test]
fn canary_puts_one_in_service_and_bakes_first() {
    let g = web(3, false, "  rollout: {strategy: canary, bake: 5m}");
    let pass = pass_with(vec![read(
        TG_A,
        &[("i-1", Healthy), ("i-2", Healthy), ("i-3", Healthy)],
    )]);
    let observed = vec![old("i-1", &g), old("i-2", &g), old("i-3", &g)];
    let (text, _) = render(&pass, &[g], observed);
    insta::assert_snapshot!("traffic_canary", text);
}

#[test]
fn the_floor_counts_only_instances_in_service() {
    // maxUnavailable 1 of 3: the floor is 2 in service. i-2 is healthy as an instance
    // but only `initial` in the target group, so it does not count: only one old
    // instance may go before new ones are in service.
    let g = web(3, false, "  rollout: {maxSurge: 0, maxUnavailable: 1}");
    let pass = pass_with(vec![read(
        TG_A,
        &[("i-1", Healthy), ("i-2", Initial), ("i-3", Healthy)],
    )]);
    let observed = vec![old("i-1", &g), old("i-2", &g), old("i-3", &g)];
    let (text, steps) = render(&pass, &[g], observed);
    insta::assert_snapshot!("traffic_floor_in_service", text);
    let Some(Step::Deregister { instance_ids, .. }) = steps.first() else {
        panic!("the plan starts by taking out the instance not in service: {steps:?}");
    };
    assert_eq!(instance_ids, &["i-2".to_string()]);
}

#[test]
fn an_unregistered_instance_is_registered_again_not_replaced() {
    let g = web(2, true, "");
    let pass = pass_with(vec![
        read(TG_A, &[("i-1", Healthy), ("i-2", Healthy)]),
        // i-2 was deregistered out of band from TG_B (still draining).
        read(TG_B, &[("i-1", Healthy), ("i-2", Draining)]),
    ]);
    let observed = vec![cur("i-1", &g), cur("i-2", &g)];
    let outcome = run(&pass, &[g], &[inventory(observed)]);
    let report = &outcome.document.groups[0];
    assert_eq!(report.status, GroupStatus::Planned);
    let kinds: Vec<_> = report
        .drift
        .iter()
        .map(|f| (f.kind, f.instance_id.clone()))
        .collect();
    assert_eq!(
        kinds,
        vec![(DriftKind::Unregistered, Some("i-2".to_string()))]
    );
    assert_eq!(report.drift[0].expected.as_deref(), Some(TG_B));
    assert_eq!(report.drift[0].observed.as_deref(), Some("draining"));
    assert_eq!(
        report.steps,
        vec![
            Step::Register {
                instance_ids: vec!["i-2".into()],
                target_groups: vec![TG_A.into(), TG_B.into()],
            },
            Step::WaitInService {
                instance_ids: vec!["i-2".into()],
                target_groups: vec![TG_A.into(), TG_B.into()],
                deadline: std::time::Duration::from_secs(300),
            },
        ]
    );
    assert_eq!(
        outcome.document.budget.used, 0,
        "registering terminates nothing"
    );
}

#[test]
fn a_young_unregistered_instance_is_not_drift_yet() {
    // Launched a minute ago (deadline 5m): it may be a plan's new instance between its
    // health gate and its register step.
    let g = web(1, false, "");
    let pass = pass_with(vec![read(TG_A, &[])]);
    let young = run(
        &pass,
        std::slice::from_ref(&g),
        &[inventory(vec![cur("i-1", &g).age(60)])],
    );
    let report = &young.document.groups[0];
    assert!(report.drift.is_empty(), "{:?}", report.drift);
    assert!(report.steps.is_empty(), "{:?}", report.steps);
    let later = run(
        &pass,
        std::slice::from_ref(&g),
        &[inventory(vec![cur("i-1", &g).age(301)])],
    );
    assert_eq!(
        later.document.groups[0].drift[0].kind,
        DriftKind::Unregistered
    );
}

#[test]
fn foreign_targets_are_unmanaged_and_never_deregistered() {
    let g = web(1, false, "");
    let pass = pass_with(vec![read(
        TG_A,
        &[("i-1", Healthy), ("i-someone-elses", Healthy)],
    )]);
    let observed = vec![old("i-1", &g)];
    let outcome = run(&pass, &[g], &[inventory(observed)]);
    let doc = &outcome.document;
    assert_eq!(doc.unmanaged.len(), 1);
    assert_eq!(doc.unmanaged[0].kind, DriftKind::Unmanaged);
    assert_eq!(
        doc.unmanaged[0].instance_id.as_deref(),
        Some("i-someone-elses")
    );
    assert_eq!(doc.unmanaged[0].group.as_deref(), Some("web"));
    for step in &doc.groups[0].steps {
        if let Step::Deregister { instance_ids, .. } | Step::Terminate { instance_ids } = step {
            assert_eq!(
                instance_ids,
                &["i-1".to_string()],
                "only our own instance leaves"
            );
        }
    }
}

#[test]
fn an_unreadable_target_group_deregisters_nothing() {
    let g = web(2, false, "");
    let pass = pass_with(vec![TargetGroupHealth::failed(
        PROVIDER,
        TG_A,
        "DescribeTargetHealth throttled".into(),
    )]);
    let observed = vec![old("i-1", &g), old("i-2", &g)];
    let (text, steps) = render(&pass, &[g], observed);
    insta::assert_snapshot!("traffic_unreadable", text);
    assert!(
        steps
            .iter()
            .all(|s| !matches!(s, Step::Deregister { .. } | Step::Terminate { .. })),
        "{steps:?}"
    );
}

#[test]
fn a_group_without_traffic_plans_exactly_as_before() {
    let plain = group("web", 2, "");
    let observed = || vec![old("i-1", &plain), old("i-2", &plain)];
    let with_reads = pass_with(vec![read(TG_A, &[("i-1", Healthy)])]);
    let a = run(
        &Pass::default(),
        std::slice::from_ref(&plain),
        &[inventory(observed())],
    );
    let b = run(
        &with_reads,
        std::slice::from_ref(&plain),
        &[inventory(observed())],
    );
    assert_eq!(a.document, b.document);
    assert!(a.document.groups[0].steps.iter().all(|s| matches!(
        s,
        Step::Launch { .. } | Step::WaitHealthy { .. } | Step::Terminate { .. }
    )));
}
