//! Drift classification (issue 5), one rule per test: ownership, the `modified`
//! comparisons, health verdicts against grace and deadline, and group counts.

#![allow(clippy::unwrap_used)]

use crate::planner_support::*;
use phoenix_core::drift::{
    DriftKind, Field, GroupContext, MemberHealth, Ownership, RemovalClass, classify_group,
    member_health, modified_fields, ownership,
};
use phoenix_core::model::{InstanceHealth, InstanceState};
use phoenix_core::spec::ParsedGroup;
use phoenix_core::tags;

fn ctx(g: &ParsedGroup, complete: bool) -> GroupContext<'_> {
    GroupContext {
        name: g.group.name().as_str(),
        provider: PROVIDER,
        hash: &g.hash,
        template: &g.group.spec.template,
        health: &g.group.spec.health,
        replicas: g.group.spec.replicas.get(),
        inventory_complete: complete,
        now: now(),
    }
}

fn kinds(g: &ParsedGroup, instances: &[I], complete: bool) -> Vec<(DriftKind, Option<String>)> {
    let refs: Vec<_> = instances.iter().map(|i| &i.0).collect();
    classify_group(&ctx(g, complete), &refs)
        .findings
        .into_iter()
        .map(|f| (f.kind, f.instance_id))
        .collect()
}

#[test]
fn only_our_exact_owner_with_a_valid_group_is_ours() {
    let g = group("web", 1, "");
    assert_eq!(
        ownership(&cur("i", &g).0, OWNER),
        Ownership::Ours { group: "web" }
    );
    for other in [
        cur("i", &g).tag(tags::OWNER, Some("acme-staging")),
        cur("i", &g).tag(tags::OWNER, Some("ACME")),
        cur("i", &g).tag(tags::OWNER, None),
        cur("i", &g).tag(tags::GROUP, None),
        cur("i", &g).tag(tags::GROUP, Some("")),
        cur("i", &g).tag(tags::GROUP, Some("-web")),
    ] {
        assert_eq!(
            ownership(&other.0, OWNER),
            Ownership::Unmanaged,
            "{:?}",
            other.0.tags
        );
    }
}

#[test]
fn modified_compares_each_attribute() {
    let g = group("web", 1, "");
    let t = &g.group.spec.template;
    assert!(modified_fields(&cur("i", &g).0, t).is_empty());
    let fields =
        |i: I| -> Vec<Field> { modified_fields(&i.0, t).into_iter().map(|f| f.0).collect() };
    assert_eq!(fields(cur("i", &g).image("ami-x")), vec![Field::Image]);
    assert_eq!(
        fields(cur("i", &g).itype("m5.large")),
        vec![Field::InstanceType]
    );
    // Any listed subnet is fine; an unlisted or unreported one is not.
    assert!(fields(cur("i", &g).subnet(Some("subnet-b"))).is_empty());
    assert_eq!(
        fields(cur("i", &g).subnet(Some("subnet-c"))),
        vec![Field::SubnetId]
    );
    assert_eq!(fields(cur("i", &g).subnet(None)), vec![Field::SubnetId]);
    // Security groups are a set: order and duplicates do not matter, members do.
    assert!(fields(cur("i", &g).sgs(&["sg-2", "sg-1", "sg-2"])).is_empty());
    assert_eq!(
        fields(cur("i", &g).sgs(&["sg-1", "sg-3"])),
        vec![Field::SecurityGroupIds]
    );
    assert_eq!(fields(cur("i", &g).sgs(&[])), vec![Field::SecurityGroupIds]);
}

#[test]
fn empty_template_lists_are_not_compared() {
    let g = phoenix_core::parse_group(
        "apiVersion: phoenix/v1\nkind: InstanceGroup\nmetadata: {name: web}\nspec:\n  provider: aws\n  replicas: 1\n  template: {image: ami-new, instanceType: t3.micro}\n",
    )
    .unwrap();
    let i = cur("i", &g).subnet(None).sgs(&["sg-default"]);
    assert!(modified_fields(&i.0, &g.group.spec.template).is_empty());
}

#[test]
fn modified_is_only_checked_on_the_current_generation() {
    let g = group("web", 1, "");
    let found = kinds(&g, &[old("i-1", &g).itype("t3.large")], true);
    assert_eq!(found, vec![(DriftKind::Outdated, Some("i-1".into()))]);
}

#[test]
fn health_verdicts_follow_grace_and_deadline() {
    let g = group("web", 1, "  health: {grace: 30s, deadline: 5m}");
    let h = &g.group.spec.health;
    let verdict = |i: I| member_health(&i.0, h, now()).0;
    assert_eq!(verdict(cur("i", &g)), MemberHealth::Healthy);
    assert_eq!(
        verdict(cur("i", &g).health(InstanceHealth::Unhealthy).age(29)),
        MemberHealth::Starting
    );
    assert_eq!(
        verdict(cur("i", &g).health(InstanceHealth::Unhealthy).age(30)),
        MemberHealth::Failing
    );
    assert_eq!(
        verdict(cur("i", &g).health(InstanceHealth::Unknown).age(299)),
        MemberHealth::Starting
    );
    assert_eq!(
        verdict(cur("i", &g).health(InstanceHealth::Unknown).age(300)),
        MemberHealth::Failing
    );
    assert_eq!(
        verdict(cur("i", &g).state(InstanceState::Stopped)),
        MemberHealth::Failing
    );
    assert_eq!(
        verdict(cur("i", &g).state(InstanceState::Stopping)),
        MemberHealth::Failing
    );
    assert_eq!(
        verdict(
            cur("i", &g)
                .state(InstanceState::Pending)
                .health(InstanceHealth::Unknown)
                .age(10)
        ),
        MemberHealth::Starting
    );
    // A launch time in the future (clock skew) counts as just launched.
    let mut future = cur("i", &g).health(InstanceHealth::Unhealthy);
    future.0.launch_time = Some(now() + std::time::Duration::from_secs(60));
    assert_eq!(verdict(future), MemberHealth::Starting);
}

#[test]
fn check_none_trusts_running() {
    let g = group("web", 1, "  health: {check: none}");
    let i = cur("i", &g).health(InstanceHealth::Unhealthy).age(10_000);
    assert_eq!(
        member_health(&i.0, &g.group.spec.health, now()).0,
        MemberHealth::Healthy
    );
}

#[test]
fn missing_needs_a_complete_inventory_and_surplus_does_not() {
    let g = group("web", 3, "");
    assert_eq!(kinds(&g, &[cur("i-1", &g)], true)[0].0, DriftKind::Missing);
    assert!(kinds(&g, &[cur("i-1", &g)], false).is_empty());
    let g1 = group("web", 1, "");
    let two = [cur("i-1", &g1), cur("i-2", &g1)];
    assert_eq!(kinds(&g1, &two, false)[0].0, DriftKind::Surplus);
}

#[test]
fn an_instance_can_be_outdated_and_unhealthy_and_is_replaced_first() {
    let g = group("web", 2, "");
    let instances = [old("i-1", &g), old("i-2", &g).state(InstanceState::Stopped)];
    let refs: Vec<_> = instances.iter().map(|i| &i.0).collect();
    let d = classify_group(&ctx(&g, true), &refs);
    let found: Vec<_> = d
        .findings
        .iter()
        .map(|f| (f.kind, f.instance_id.clone()))
        .collect();
    assert_eq!(
        found,
        vec![
            (DriftKind::Outdated, Some("i-1".into())),
            (DriftKind::Outdated, Some("i-2".into())),
            (DriftKind::Unhealthy, Some("i-2".into())),
        ]
    );
    assert_eq!(d.replace[0].instance.id, "i-2");
    assert_eq!(d.replace[0].removal, Some(RemovalClass::Unhealthy));
}

#[test]
fn an_unparsable_or_absent_hash_tag_is_outdated() {
    let g = group("web", 2, "");
    let instances = [
        cur("i-1", &g).tag(tags::SPEC_HASH, Some("v1:sha256:zz")),
        cur("i-2", &g).tag(tags::SPEC_HASH, None),
    ];
    let refs: Vec<_> = instances.iter().map(|i| &i.0).collect();
    let d = classify_group(&ctx(&g, true), &refs);
    assert!(d.findings.iter().all(|f| f.kind == DriftKind::Outdated));
    assert_eq!(d.findings[1].observed.as_deref(), Some("(none)"));
    assert_eq!(d.observed_hashes.len(), 2);
}
