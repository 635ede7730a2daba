//! Planner properties (issue 5), checked with proptest on random fleets:
//! - planning is deterministic, and independent of inventory order;
//! - applying a plan to a model fleet, then planning again, yields no changes;
//! - no step leaves fewer than `replicas - maxUnavailable` healthy instances (when
//!   there were that many before), nor terminates the last healthy instance, nor runs
//!   more than `maxSurge` extra instances in a rolling or canary plan;
//! - nothing without our owner tag (or outside the planned group) is ever touched.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use crate::planner_support::*;
use phoenix_core::model::{Instance, InstanceHealth, InstanceState, Inventory};
use phoenix_core::plan::{GroupReport, PlanDocument, PlanMemory, Step};
use phoenix_core::spec::{ParsedGroup, Strategy as Rollout};
use phoenix_core::tags;
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct GroupCase {
    replicas: u32,
    surge: String,
    unavailable: String,
    strategy: &'static str,
    bake: bool,
    members: Vec<MemberCase>,
}

#[derive(Debug, Clone, Copy)]
enum Generation {
    Current,
    Old,
    NoTag,
}

#[derive(Debug, Clone, Copy)]
enum Condition {
    Healthy,
    FailingPastGrace,
    FailingInGrace,
    Starting,
    Pending,
    Stopped,
    SilentPastDeadline,
}

#[derive(Debug, Clone, Copy)]
struct MemberCase {
    generation: Generation,
    modified: bool,
    condition: Condition,
    foreign_owner: bool,
    age: u64,
}

fn int_or_percent() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u32..4).prop_map(|n| n.to_string()),
        (0u32..=100).prop_map(|p| format!("\"{p}%\"")),
    ]
}

fn member() -> impl Strategy<Value = MemberCase> {
    (
        prop_oneof![
            4 => Just(Generation::Current),
            3 => Just(Generation::Old),
            1 => Just(Generation::NoTag),
        ],
        prop::bool::weighted(0.15),
        prop_oneof![
            6 => Just(Condition::Healthy),
            1 => Just(Condition::FailingPastGrace),
            1 => Just(Condition::FailingInGrace),
            1 => Just(Condition::Starting),
            1 => Just(Condition::Pending),
            1 => Just(Condition::Stopped),
            1 => Just(Condition::SilentPastDeadline),
        ],
        prop::bool::weighted(0.1),
        100u64..100_000,
    )
        .prop_map(
            |(generation, modified, condition, foreign_owner, age)| MemberCase {
                generation,
                modified,
                condition,
                foreign_owner,
                age,
            },
        )
}

fn group_case() -> impl Strategy<Value = GroupCase> {
    (
        0u32..7,
        int_or_percent(),
        int_or_percent(),
        prop_oneof![Just("rolling"), Just("blue-green"), Just("canary")],
        any::<bool>(),
        prop::collection::vec(member(), 0..9),
    )
        .prop_map(
            |(replicas, surge, unavailable, strategy, bake, members)| GroupCase {
                replicas,
                surge,
                unavailable,
                strategy,
                bake,
                members,
            },
        )
}

#[derive(Debug, Clone)]
struct World {
    groups: Vec<ParsedGroup>,
    instances: Vec<Instance>,
}

fn rollout_yaml(c: &GroupCase) -> String {
    format!(
        "  rollout: {{strategy: {}, maxSurge: {}, maxUnavailable: {}, bake: {}}}\n  health: {{grace: 30s, deadline: 5m}}",
        c.strategy,
        c.surge,
        c.unavailable,
        if c.bake { "30s" } else { "0s" }
    )
}

fn build(cases: &[GroupCase], orphans: usize) -> World {
    let mut groups = Vec::new();
    let mut instances = Vec::new();
    for (gi, c) in cases.iter().enumerate() {
        let name = format!("g{gi}");
        let Ok(g) = phoenix_core::parse_group(&format!(
            "apiVersion: phoenix/v1\nkind: InstanceGroup\nmetadata:\n  name: {name}\nspec:\n  provider: {PROVIDER}\n  replicas: {}\n  template:\n    image: ami-new\n    instanceType: t3.micro\n    subnetIds: [subnet-a, subnet-b]\n    securityGroupIds: [sg-1, sg-2]\n{}\n",
            c.replicas,
            rollout_yaml(c)
        )) else {
            // Both limits resolve to 0: the spec refuses it, so there is nothing to plan.
            continue;
        };
        for (mi, m) in c.members.iter().enumerate() {
            let id = format!("i-{gi}-{mi:02}");
            let mut i = match m.generation {
                Generation::Current => cur(&id, &g),
                Generation::Old => old(&id, &g),
                Generation::NoTag => cur(&id, &g).tag(tags::SPEC_HASH, None),
            }
            .age(m.age);
            if m.modified {
                i = i.itype("t3.large");
            }
            i = match m.condition {
                Condition::Healthy => i,
                Condition::FailingPastGrace => i.health(InstanceHealth::Unhealthy),
                Condition::FailingInGrace => i.health(InstanceHealth::Unhealthy).age(5),
                Condition::Starting => i.health(InstanceHealth::Unknown).age(20),
                Condition::Pending => i
                    .state(InstanceState::Pending)
                    .health(InstanceHealth::Unknown)
                    .age(20),
                Condition::Stopped => i.state(InstanceState::Stopped),
                Condition::SilentPastDeadline => i.health(InstanceHealth::Unknown).age(900),
            };
            if m.foreign_owner {
                i = i.tag(tags::OWNER, Some("someone-else"));
            }
            instances.push(i.0);
        }
        groups.push(g);
    }
    for o in 0..orphans {
        instances.push(inst(&format!("i-orphan-{o}"), "gone", "v1:sha256:00").0);
    }
    World { groups, instances }
}

fn world() -> impl Strategy<Value = World> {
    (prop::collection::vec(group_case(), 1..4), 0usize..3)
        .prop_map(|(cases, orphans)| build(&cases, orphans))
}

fn pass(world: &World, memory: PlanMemory) -> (PlanDocument, PlanMemory) {
    let mut p = Pass {
        memory,
        ..Pass::default()
    };
    p.config.max_prune_fraction = 1.0;
    let outcome = run(&p, &world.groups, &[inventory_of(&world.instances)]);
    (outcome.document, outcome.memory)
}

fn inventory_of(instances: &[Instance]) -> Inventory {
    let mut inv = inventory(Vec::new());
    inv.instances = instances.to_vec();
    inv
}

fn is_healthy(i: &Instance) -> bool {
    i.state == InstanceState::Running && i.health == InstanceHealth::Healthy
}

/// Apply one group's steps to the model fleet, checking the step invariants.
fn apply(world: &mut World, report: &GroupReport) -> Result<(), TestCaseError> {
    let spec = world
        .groups
        .iter()
        .find(|g| g.group.name().as_str() == report.name.as_str())
        .cloned();
    let in_group = |i: &Instance| i.group() == Some(report.name.as_str());
    let healthy = |w: &World| {
        w.instances
            .iter()
            .filter(|i| in_group(i) && i.owner() == Some(OWNER) && is_healthy(i))
            .count() as u32
    };
    let live = |w: &World| {
        w.instances
            .iter()
            .filter(|i| in_group(i) && i.owner() == Some(OWNER))
            .count() as u32
    };
    let healthy_before = healthy(world);
    let live_before = live(world);
    let mut launched: Vec<String> = Vec::new();
    for (n, step) in report.steps.iter().enumerate() {
        match step {
            Step::Launch { count } => {
                let g = spec.as_ref().expect("only desired groups launch");
                for k in 0..*count {
                    let id = format!("i-new-{}-{}-{k}", report.plan_id.as_deref().unwrap(), n);
                    let mut i = cur(&id, g).age(0);
                    i = i
                        .state(InstanceState::Pending)
                        .health(InstanceHealth::Unknown);
                    launched.push(id);
                    world.instances.push(i.0);
                }
            }
            Step::WaitHealthy { instance_ids, .. } => {
                for i in world.instances.iter_mut() {
                    if launched.iter().any(|l| *l == i.id)
                        || instance_ids.iter().any(|l| *l == i.id)
                    {
                        i.state = InstanceState::Running;
                        i.health = InstanceHealth::Healthy;
                    }
                }
            }
            Step::Bake { .. } => {}
            // Generated groups have no `spec.traffic` (planner_traffic covers it).
            Step::Register { .. }
            | Step::WaitInService { .. }
            | Step::Deregister { .. }
            | Step::WaitDrained { .. } => {
                return Err(TestCaseError::fail(format!(
                    "traffic step without traffic: {step:?}"
                )));
            }
            Step::Terminate { instance_ids } => {
                for id in instance_ids {
                    let pos = world.instances.iter().position(|i| &i.id == id);
                    let Some(pos) = pos else {
                        return Err(TestCaseError::fail(format!("terminate of unknown {id}")));
                    };
                    let i = &world.instances[pos];
                    prop_assert_eq!(
                        i.owner(),
                        Some(OWNER),
                        "touched {} without our owner tag",
                        id
                    );
                    prop_assert_eq!(
                        i.group(),
                        Some(report.name.as_str()),
                        "touched {} outside its group",
                        id
                    );
                    world.instances.remove(pos);
                }
            }
        }
        if let Some(g) = &spec {
            let s = &g.group.spec;
            let replicas = s.replicas.get();
            let unavailable = s.rollout.max_unavailable.resolve(replicas, false);
            let floor = replicas.saturating_sub(unavailable).min(healthy_before);
            let now_healthy = healthy(world);
            prop_assert!(
                now_healthy >= floor,
                "step {} of {}: {} healthy < floor {}",
                n + 1,
                report.name,
                now_healthy,
                floor
            );
            if replicas > 0 && healthy_before > 0 {
                prop_assert!(
                    now_healthy >= 1,
                    "last healthy instance of {} terminated",
                    report.name
                );
            }
            if s.rollout.strategy != Rollout::BlueGreen {
                let surge = s.rollout.max_surge.resolve(replicas, true).max(1);
                prop_assert!(
                    live(world) <= live_before.max(replicas + surge),
                    "step {} of {}: {} live > {} + surge {}",
                    n + 1,
                    report.name,
                    live(world),
                    replicas,
                    surge
                );
            }
        }
    }
    Ok(())
}

fn apply_all(world: &mut World, doc: &PlanDocument) -> Result<(), TestCaseError> {
    for report in &doc.groups {
        prop_assert!(
            !report.notes.iter().any(|n| n.starts_with("stopped early")),
            "{} was blocked: {:?}",
            report.name,
            report.steps
        );
        apply(world, report)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn planning_is_deterministic_and_order_independent(w in world(), seed in any::<u64>()) {
        let (a, ma) = pass(&w, PlanMemory::default());
        let (b, mb) = pass(&w, PlanMemory::default());
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(&ma, &mb);
        let mut shuffled = w.clone();
        let len = shuffled.instances.len();
        if len > 1 {
            // A cheap deterministic shuffle driven by the seed.
            let mut s = seed;
            for i in (1..len).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.instances.swap(i, (s >> 33) as usize % (i + 1));
            }
        }
        shuffled.groups.reverse();
        let (c, mc) = pass(&shuffled, PlanMemory::default());
        prop_assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&c).unwrap()
        );
        prop_assert_eq!(ma, mc);
    }

    #[test]
    fn applying_a_plan_then_planning_again_yields_no_changes(w in world()) {
        let mut w = w;
        let (first, memory) = pass(&w, PlanMemory::default());
        apply_all(&mut w, &first)?;
        let (second, memory) = pass(&w, memory);
        for g in second.groups.iter().filter(|g| g.desired_hash.is_some()) {
            prop_assert!(g.steps.is_empty(), "{} planned again: {:?}\nfirst: {:?}", g.name, g.steps, first);
            prop_assert!(g.drift.is_empty(), "{} still drifts: {:?}", g.name, g.drift);
        }
        // Orphans need a second complete sighting, so they go in the second pass.
        apply_all(&mut w, &second)?;
        let (third, _) = pass(&w, memory);
        prop_assert!(!third.changes, "third pass still changes: {:?}", third);
    }

    #[test]
    fn nothing_without_our_owner_tag_is_touched(w in world(), complete in any::<bool>()) {
        let mut inv = inventory_of(&w.instances);
        inv.complete = complete;
        let ours: BTreeMap<&str, &Instance> = w
            .instances
            .iter()
            .filter(|i| i.owner() == Some(OWNER))
            .map(|i| (i.id.as_str(), i))
            .collect();
        let outcome = run(&Pass::default(), &w.groups, &[inv]);
        let mut touched = BTreeSet::new();
        for g in &outcome.document.groups {
            for step in &g.steps {
                if let Step::Terminate { instance_ids } = step {
                    for id in instance_ids {
                        let i = ours.get(id.as_str());
                        prop_assert!(i.is_some(), "{} is not ours", id);
                        prop_assert_eq!(i.and_then(|i| i.group()), Some(g.name.as_str()));
                        prop_assert!(touched.insert(id.clone()), "{} terminated twice", id);
                    }
                }
                if !complete {
                    prop_assert!(
                        g.desired_hash.is_some(),
                        "orphan action from an incomplete inventory"
                    );
                }
            }
        }
    }
}
