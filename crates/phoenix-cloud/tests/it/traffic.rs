//! Load balancer target groups (issue 16, design section 11) through the `Provider`
//! trait: `aws_ec2` against moto's ELBv2 (a VPC with subnets in two zones, an ALB and an
//! instance target group made with the official SDK; moto reports `healthy` at once
//! and has no draining window), and the sim's modelled delays, never-healthy targets
//! and its record of terminates of attached instances.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::types::{TargetGroupAttribute, TargetTypeEnum};
use phoenix_cloud::sim::SimProvider;
use phoenix_cloud::{ErrorKind, Provider, ProviderError, TargetRef};
use phoenix_core::config::{SimConfig, SimTargetGroup};
use phoenix_core::traffic::TargetState;
use phoenix_testkit::moto::MotoServer;

use crate::contract::{aws_config, aws_provider, raw_client, request, template, within};

const OWNER: &str = "acme";

fn refs(ids: &[String]) -> Vec<TargetRef> {
    ids.iter()
        .map(|id| TargetRef {
            id: id.clone(),
            port: None,
        })
        .collect()
}

/// A VPC with subnets in two zones, an ALB over them and an instance target group on
/// port 80; returns (subnets, security group, target group ARN).
async fn moto_load_balancer(endpoint: &str) -> (Vec<String>, String, String) {
    let ec2 = raw_client(endpoint).await;
    let vpc = within(30, ec2.create_vpc().cidr_block("10.1.0.0/16").send())
        .await
        .expect("create vpc");
    let vpc_id = vpc
        .vpc()
        .and_then(|v| v.vpc_id())
        .expect("vpc id")
        .to_string();
    let mut subnets = Vec::new();
    for (cidr, zone) in [
        ("10.1.0.0/20", "us-east-1a"),
        ("10.1.16.0/20", "us-east-1b"),
    ] {
        let subnet = within(
            30,
            ec2.create_subnet()
                .vpc_id(&vpc_id)
                .cidr_block(cidr)
                .availability_zone(zone)
                .send(),
        )
        .await
        .expect("create subnet");
        subnets.push(
            subnet
                .subnet()
                .and_then(|s| s.subnet_id())
                .expect("subnet id")
                .to_string(),
        );
    }
    let sg = within(
        30,
        ec2.create_security_group()
            .group_name("web")
            .description("web")
            .vpc_id(&vpc_id)
            .send(),
    )
    .await
    .expect("create security group")
    .group_id()
    .expect("group id")
    .to_string();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&sdk);
    within(
        30,
        elb.create_load_balancer()
            .name("web-alb")
            .set_subnets(Some(subnets.clone()))
            .send(),
    )
    .await
    .expect("create load balancer");
    let tg = within(
        30,
        elb.create_target_group()
            .name("web-tg")
            .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
            .port(80)
            .vpc_id(&vpc_id)
            .target_type(TargetTypeEnum::Instance)
            .send(),
    )
    .await
    .expect("create target group");
    let arn = tg.target_groups()[0]
        .target_group_arn()
        .expect("target group arn")
        .to_string();
    within(
        30,
        elb.modify_target_group_attributes()
            .target_group_arn(&arn)
            .attributes(
                TargetGroupAttribute::builder()
                    .key("deregistration_delay.timeout_seconds")
                    .value("12")
                    .build(),
            )
            .send(),
    )
    .await
    .expect("set the deregistration delay");
    (subnets, sg, arn)
}

#[tokio::test]
async fn aws_registers_describes_and_deregisters_targets_on_moto() {
    let moto = MotoServer::start();
    let (subnets, sg, tg) = moto_load_balancer(&moto.endpoint_url()).await;
    let provider = aws_provider(&aws_config("aws", &moto.endpoint_url())).await;
    let t = template("ami-12345678", &subnets, &sg);
    let launched = within(60, provider.launch(&request(OWNER, &t, "tok-1", 2)))
        .await
        .expect("launch");
    let ids: Vec<String> = launched.iter().map(|i| i.id.to_string()).collect();

    assert!(
        within(30, provider.target_health(&tg))
            .await
            .expect("empty")
            .is_empty()
    );
    within(30, provider.register_targets(&tg, &refs(&ids)))
        .await
        .expect("register");
    // Registering again changes nothing.
    within(30, provider.register_targets(&tg, &refs(&ids)))
        .await
        .expect("register again");
    let targets = within(30, provider.target_health(&tg))
        .await
        .expect("health");
    let seen: BTreeSet<String> = targets.iter().map(|t| t.id.to_string()).collect();
    assert_eq!(seen, ids.iter().cloned().collect::<BTreeSet<_>>());
    // moto: healthy at once, on the target group's port.
    assert!(
        targets
            .iter()
            .all(|t| t.state == TargetState::Healthy && t.port == Some(80)),
        "{targets:?}"
    );

    within(30, provider.deregister_targets(&tg, &refs(&ids[..1])))
        .await
        .expect("deregister");
    let targets = within(30, provider.target_health(&tg))
        .await
        .expect("health");
    let seen: Vec<String> = targets.iter().map(|t| t.id.to_string()).collect();
    // moto: no draining window, the target is gone at once.
    assert_eq!(seen, ids[1..].to_vec());

    let info = within(30, provider.target_group_info(&tg))
        .await
        .expect("attributes");
    assert_eq!(info.deregistration_delay, Duration::from_secs(12));

    let missing = format!("{tg}-gone").replace("/web-tg/", "/nope/");
    let err = within(30, provider.target_health(&missing))
        .await
        .expect_err("an unknown target group");
    assert!(
        matches!(err, ProviderError::TargetGroupNotFound { .. }),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Client);
}

fn sim_config(tg: SimTargetGroup) -> SimConfig {
    SimConfig {
        name: "sim".into(),
        launch_latency: Duration::ZERO,
        launch_failure_rate: 0.0,
        unhealthy_images: Vec::new(),
        images: Vec::new(),
        target_groups: vec![tg],
    }
}

#[tokio::test]
async fn sim_models_registration_draining_never_healthy_targets_and_violations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tg = SimTargetGroup {
        registration_delay: Duration::from_millis(150),
        deregistration_delay: Duration::from_millis(150),
        unhealthy_images: vec!["ami-broken".into()],
        ..SimTargetGroup::named("web-tg")
    };
    let sim = within(
        30,
        SimProvider::open_dir(&sim_config(tg.clone()), dir.path().to_path_buf()),
    )
    .await
    .expect("open sim");
    let good = within(
        30,
        sim.launch(&request(OWNER, &template("ami-good", &[], "sg-1"), "a", 2)),
    )
    .await
    .expect("launch");
    let bad = within(
        30,
        sim.launch(&request(
            OWNER,
            &template("ami-broken", &[], "sg-1"),
            "b",
            1,
        )),
    )
    .await
    .expect("launch");
    let good: Vec<String> = good.iter().map(|i| i.id.to_string()).collect();
    let bad: Vec<String> = bad.iter().map(|i| i.id.to_string()).collect();
    let all: Vec<String> = good.iter().chain(&bad).cloned().collect();
    within(30, sim.register_targets("web-tg", &refs(&all)))
        .await
        .expect("register");
    let states = |targets: Vec<phoenix_core::traffic::Target>| -> Vec<(String, TargetState)> {
        targets
            .into_iter()
            .map(|t| (t.id.to_string(), t.state))
            .collect()
    };
    let first = states(
        within(30, sim.target_health("web-tg"))
            .await
            .expect("health"),
    );
    assert!(
        first.iter().all(|(_, s)| *s == TargetState::Initial),
        "{first:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A second handle on the same folder (another process, in the daemon's life) sees
    // the same target groups.
    let other = within(
        30,
        SimProvider::open_dir(&sim_config(tg), dir.path().to_path_buf()),
    )
    .await
    .expect("second handle");
    let later = states(
        within(30, other.target_health("web-tg"))
            .await
            .expect("health"),
    );
    for (id, state) in &later {
        let want = if bad.contains(id) {
            TargetState::Unhealthy
        } else {
            TargetState::Healthy
        };
        assert_eq!(*state, want, "{id}");
    }
    within(30, sim.deregister_targets("web-tg", &refs(&good[..1])))
        .await
        .expect("deregister");
    let draining = states(
        within(30, sim.target_health("web-tg"))
            .await
            .expect("health"),
    );
    assert!(
        draining.contains(&(good[0].clone(), TargetState::Draining)),
        "{draining:?}"
    );
    // Terminating a draining instance is a violation; so is a registered one.
    within(30, sim.terminate(&[good[0].clone(), good[1].clone()]))
        .await
        .expect("terminate");
    let violations = within(30, sim.traffic_violations())
        .await
        .expect("violations");
    let caught: Vec<(String, TargetState)> = violations
        .iter()
        .map(|v| (v.instance_id.clone(), v.state))
        .collect();
    assert_eq!(
        caught,
        vec![
            (good[0].clone(), TargetState::Draining),
            (good[1].clone(), TargetState::Healthy)
        ]
    );
    let left = states(
        within(30, sim.target_health("web-tg"))
            .await
            .expect("health"),
    );
    assert_eq!(left, vec![(bad[0].clone(), TargetState::Unhealthy)]);
    // Draining ends: after the delay a deregistered target is gone.
    within(30, sim.deregister_targets("web-tg", &refs(&bad)))
        .await
        .expect("deregister");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        within(30, sim.target_health("web-tg"))
            .await
            .expect("health")
            .is_empty()
    );

    let err = within(30, sim.target_health("nope"))
        .await
        .expect_err("unknown");
    assert!(
        matches!(err, ProviderError::TargetGroupNotFound { .. }),
        "{err:?}"
    );
    let err = within(
        30,
        sim.register_targets("web-tg", &refs(&["i-0000000000000ffff".into()])),
    )
    .await
    .expect_err("not an instance");
    assert_eq!(err.kind(), ErrorKind::Client);
}
