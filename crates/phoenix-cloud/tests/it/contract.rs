//! phoenix-cloud integration tests: one trait-level contract suite run against both the
//! sim and `aws_ec2` (against a real moto server on loopback), plus the cases only one
//! of them has: paging past 100 reservations, out-of-band changes, a fault-injecting
//! proxy (throttling, 5xx, lost answers), and sim persistence across restarts.
//!
//! Every await has a timeout, so a hang fails instead of blocking the suite.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{AttributeValue, ResourceType, Tag, TagSpecification};
use phoenix_cloud::aws::{AwsEc2Provider, AwsOptions};
use phoenix_cloud::sim::{SimChange, SimProvider};
use phoenix_cloud::{
    BuildOptions, ErrorKind, LaunchRequest, Provider, StaticCredentials, build_providers,
};
use phoenix_core::config::{AwsEc2Config, ProviderConfig, SimConfig};
use phoenix_core::model::{InstanceHealth, InstanceState};
use phoenix_core::spec::GroupName;
use phoenix_core::{Template, spec_hash, tags};
use phoenix_testkit::moto::{Fault, FaultProxy, FaultRule, MotoServer};

const REGION: &str = "us-east-1";

/// Await with a deadline.
pub(crate) async fn within<F: Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("timed out after {secs}s"))
}

fn credentials() -> StaticCredentials {
    StaticCredentials {
        access_key_id: "testing".to_string(),
        secret_access_key: "testing".to_string(),
    }
}

pub(crate) fn aws_config(name: &str, endpoint: &str) -> AwsEc2Config {
    AwsEc2Config {
        name: name.to_string(),
        region: Some(REGION.to_string()),
        endpoint_url: Some(endpoint.to_string()),
        profile: None,
        run_instances_per_second: 50.0,
        describe_per_second: 100.0,
        mutate_per_second: 50.0,
        max_attempts: 5,
    }
}

pub(crate) async fn aws_provider(config: &AwsEc2Config) -> AwsEc2Provider {
    aws_provider_with(config, AwsOptions::default()).await
}

pub(crate) async fn aws_provider_with(config: &AwsEc2Config, base: AwsOptions) -> AwsEc2Provider {
    let options = AwsOptions {
        static_credentials: Some(credentials()),
        retry_base: Duration::from_millis(10),
        retry_cap: Duration::from_millis(200),
        ..base
    };
    within(30, AwsEc2Provider::connect(config, &options))
        .await
        .expect("connect to moto")
}

/// A raw SDK client for setting moto up and for out-of-band changes.
pub(crate) async fn raw_client(endpoint: &str) -> Client {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    Client::new(&sdk)
}

/// A VPC with two large subnets and a security group; returns (subnets, group).
pub(crate) async fn moto_network(client: &Client) -> (Vec<String>, String) {
    let vpc = within(30, client.create_vpc().cidr_block("10.0.0.0/16").send())
        .await
        .expect("create vpc");
    let vpc_id = vpc
        .vpc()
        .and_then(|v| v.vpc_id())
        .expect("vpc id")
        .to_string();
    let mut subnets = Vec::new();
    for cidr in ["10.0.0.0/20", "10.0.16.0/20"] {
        let subnet = within(
            30,
            client
                .create_subnet()
                .vpc_id(&vpc_id)
                .cidr_block(cidr)
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
        client
            .create_security_group()
            .group_name("phoenix-test")
            .description("phoenix tests")
            .vpc_id(&vpc_id)
            .send(),
    )
    .await
    .expect("create security group");
    (subnets, sg.group_id().expect("group id").to_string())
}

fn template(image: &str, subnets: &[String], sg: &str) -> Template {
    serde_json::from_value(serde_json::json!({
        "image": image,
        "instanceType": "t3.micro",
        "subnetIds": subnets,
        "securityGroupIds": [sg],
        "userData": "#!/bin/sh\necho hello\n",
        "tags": {"env": "prod", "cost-center": 42, "critical": true},
    }))
    .expect("a valid template")
}

fn request(owner: &str, template: &Template, token: &str, count: u32) -> LaunchRequest {
    let group = GroupName::new("web").expect("valid group name");
    LaunchRequest {
        owner: owner.to_string(),
        spec_hash: spec_hash(group.as_str(), template),
        group,
        template: template.clone(),
        commit: "0123456789abcdef0123456789abcdef01234567".to_string(),
        plan_id: "plan-7".to_string(),
        launch_token: token.to_string(),
        count,
    }
}

// ---------------------------------------------------------------------------------
// The contract: what every provider does, checked through `dyn Provider` only.
// ---------------------------------------------------------------------------------

async fn contract(provider: &dyn Provider, template: &Template) {
    launch_sets_every_tag_and_spreads_over_subnets(provider, template).await;
    inventory_is_scoped_to_the_owner(provider, template).await;
    launch_is_idempotent_per_token(provider, template).await;
    terminate_removes_from_inventory(provider, template).await;
    health_of_running_instances(provider, template).await;
    unknown_ids_are_not_found(provider).await;
}

async fn launch_sets_every_tag_and_spreads_over_subnets(p: &dyn Provider, template: &Template) {
    let req = request("tags-owner", template, "tok-tags", 4);
    let launched = within(60, p.launch(&req)).await.expect("launch");
    assert_eq!(launched.len(), 4);
    let inventory = within(60, p.inventory("tags-owner")).await;
    assert!(inventory.complete, "{:?}", inventory.error);
    assert_eq!(inventory.provider, p.name());
    assert_eq!(inventory.instances.len(), 4);
    let hash = req.spec_hash.to_string();
    for instance in &inventory.instances {
        assert_eq!(instance.owner(), Some("tags-owner"));
        assert_eq!(instance.group(), Some("web"));
        assert_eq!(instance.spec_hash(), Some(hash.as_str()));
        assert_eq!(instance.commit(), Some(req.commit.as_str()));
        assert_eq!(instance.plan(), Some("plan-7"));
        assert_eq!(instance.launch_token(), Some("tok-tags"));
        assert_eq!(instance.tag("env"), Some("prod"));
        assert_eq!(instance.tag("cost-center"), Some("42"));
        assert_eq!(instance.tag("critical"), Some("true"));
        assert_eq!(instance.image, template.image.as_str());
        assert_eq!(instance.instance_type, "t3.micro");
        let sgs: Vec<&str> = template
            .security_group_ids
            .iter()
            .map(|s| s.as_str())
            .collect();
        assert_eq!(
            *instance.security_group_ids, *sgs,
            "top-level security groups kept"
        );
        assert!(instance.launch_time.is_some());
        assert!(instance.private_ip.is_some());
        assert!(instance.state.is_live());
    }
    let used: BTreeSet<&str> = inventory
        .instances
        .iter()
        .filter_map(|i| i.subnet_id.as_deref())
        .collect();
    let listed: BTreeSet<&str> = template.subnet_ids.iter().map(|s| s.as_str()).collect();
    assert_eq!(used, listed, "4 instances spread over both subnets");
    let launched_ids: BTreeSet<&str> = launched.iter().map(|i| i.id.as_str()).collect();
    let seen_ids: BTreeSet<&str> = inventory.instances.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(launched_ids, seen_ids);
}

async fn inventory_is_scoped_to_the_owner(p: &dyn Provider, template: &Template) {
    within(
        60,
        p.launch(&request("scope-a", template, "tok-scope-a", 2)),
    )
    .await
    .expect("launch a");
    within(
        60,
        p.launch(&request("scope-b", template, "tok-scope-b", 3)),
    )
    .await
    .expect("launch b");
    let a = within(60, p.inventory("scope-a")).await;
    let b = within(60, p.inventory("scope-b")).await;
    let nobody = within(60, p.inventory("scope-nobody")).await;
    assert_eq!(a.instances.len(), 2);
    assert_eq!(b.instances.len(), 3);
    assert!(a.instances.iter().all(|i| i.owner() == Some("scope-a")));
    assert!(b.instances.iter().all(|i| i.owner() == Some("scope-b")));
    assert!(nobody.complete && nobody.instances.is_empty());
    // The same token under another owner is another step.
    let other = within(60, p.find_by_launch_token("scope-b", "tok-scope-a"))
        .await
        .expect("find");
    assert!(other.is_empty());
}

async fn launch_is_idempotent_per_token(p: &dyn Provider, template: &Template) {
    let req = request("idem", template, "plan-7/step-1/attempt-0", 3);
    let first = within(60, p.launch(&req)).await.expect("first launch");
    let again = within(60, p.launch(&req))
        .await
        .expect("second launch, same token");
    let ids = |v: &[phoenix_core::model::Instance]| -> BTreeSet<String> {
        v.iter().map(|i| i.id.to_string()).collect()
    };
    assert_eq!(ids(&first), ids(&again), "no double launch");
    assert_eq!(within(60, p.inventory("idem")).await.instances.len(), 3);

    // A larger count for the same step launches only the difference.
    let more = LaunchRequest {
        count: 5,
        ..req.clone()
    };
    let grown = within(60, p.launch(&more)).await.expect("grow");
    assert_eq!(grown.len(), 5);
    assert!(ids(&first).is_subset(&ids(&grown)));
    let found = within(60, p.find_by_launch_token("idem", &req.launch_token))
        .await
        .expect("find by token");
    assert_eq!(ids(&found), ids(&grown));
    assert_eq!(within(60, p.inventory("idem")).await.instances.len(), 5);
}

async fn terminate_removes_from_inventory(p: &dyn Provider, template: &Template) {
    let launched = within(60, p.launch(&request("term", template, "tok-term", 3)))
        .await
        .expect("launch");
    let gone: Vec<String> = launched.iter().take(2).map(|i| i.id.to_string()).collect();
    within(60, p.terminate(&gone)).await.expect("terminate");
    within(60, p.terminate(&gone))
        .await
        .expect("terminating twice is fine");
    within(60, p.terminate(&[]))
        .await
        .expect("nothing to terminate");
    let inventory = within(60, p.inventory("term")).await;
    assert!(inventory.complete);
    let left: Vec<&str> = inventory.instances.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(
        left,
        vec![launched[2].id.as_str()],
        "terminated instances are left out"
    );
}

async fn health_of_running_instances(p: &dyn Provider, template: &Template) {
    let launched = within(60, p.launch(&request("health", template, "tok-health", 2)))
        .await
        .expect("launch");
    let ids: Vec<String> = launched.iter().map(|i| i.id.to_string()).collect();
    let health = within(60, p.health(&ids)).await.expect("health");
    assert_eq!(health.len(), 2);
    assert!(
        health.values().all(|h| *h == InstanceHealth::Healthy),
        "{health:?}"
    );
    let inventory = within(60, p.inventory("health")).await;
    assert!(
        inventory
            .instances
            .iter()
            .all(|i| i.state == InstanceState::Running && i.health == InstanceHealth::Healthy)
    );
}

async fn unknown_ids_are_not_found(p: &dyn Provider) {
    let err = within(60, p.terminate(&["i-0123456789abcdef0".to_string()]))
        .await
        .expect_err("an id nobody launched");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_sim() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = sim_open(dir.path(), SimConfig::default_named("sim")).await;
    let subnets = vec!["subnet-a".to_string(), "subnet-b".to_string()];
    contract(&sim, &template("ami-golden", &subnets, "sg-1")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_aws_ec2_on_moto() {
    let moto = MotoServer::start();
    let client = raw_client(&moto.endpoint_url()).await;
    let (subnets, sg) = moto_network(&client).await;
    let provider = aws_provider(&aws_config("aws", &moto.endpoint_url())).await;
    contract(&provider, &template("ami-12345678", &subnets, &sg)).await;

    // The fixture's reset forgets everything (what tests sharing a server rely on).
    moto.reset();
    let after = within(60, provider.inventory("tags-owner")).await;
    assert!(after.complete && after.instances.is_empty(), "{after:?}");
}

// ---------------------------------------------------------------------------------
// aws_ec2 against moto: paging, out-of-band changes, faults.
// ---------------------------------------------------------------------------------

/// Launch `n` single-instance reservations for `owner` with the raw client.
async fn raw_reservations(client: &Client, owner: &str, subnet: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let out = within(
            30,
            client
                .run_instances()
                .image_id("ami-12345678")
                .instance_type("t3.micro".into())
                .min_count(1)
                .max_count(1)
                .subnet_id(subnet)
                .tag_specifications(
                    TagSpecification::builder()
                        .resource_type(ResourceType::Instance)
                        .tags(Tag::builder().key(tags::OWNER).value(owner).build())
                        .build(),
                )
                .send(),
        )
        .await
        .expect("raw run instances");
        ids.extend(
            out.instances()
                .iter()
                .filter_map(|i| i.instance_id().map(str::to_string)),
        );
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_inventory_follows_next_token_past_100_reservations() {
    let moto = MotoServer::start();
    let client = raw_client(&moto.endpoint_url()).await;
    let (subnets, _) = moto_network(&client).await;
    let mine = raw_reservations(&client, "pager", &subnets[0], 130).await;
    raw_reservations(&client, "someone-else", &subnets[0], 5).await;

    // The scenario really pages: one unpaged call does not see everything.
    let first_page = within(60, client.describe_instances().send())
        .await
        .expect("describe");
    assert!(
        first_page.next_token().is_some(),
        "moto pages at 100 reservations"
    );

    // No MaxResults: moto's own 100-reservation pages, as the brief warns.
    let unpaged = AwsOptions {
        page_size: None,
        ..AwsOptions::default()
    };
    let provider = aws_provider_with(&aws_config("aws", &moto.endpoint_url()), unpaged).await;
    let inventory = within(120, provider.inventory("pager")).await;
    assert!(inventory.complete, "{:?}", inventory.error);
    let seen: BTreeSet<String> = inventory
        .instances
        .iter()
        .map(|i| i.id.to_string())
        .collect();
    assert_eq!(seen, mine.iter().cloned().collect::<BTreeSet<_>>());

    // moto keeps terminated instances listed; inventory leaves them out.
    within(60, provider.terminate(&mine[..10]))
        .await
        .expect("terminate");
    let inventory = within(120, provider.inventory("pager")).await;
    assert_eq!(inventory.instances.len(), 120);
    assert!(
        inventory
            .instances
            .iter()
            .all(|i| i.state != InstanceState::Terminated)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_out_of_band_instance_type_change_shows_in_inventory() {
    let moto = MotoServer::start();
    let client = raw_client(&moto.endpoint_url()).await;
    let (subnets, sg) = moto_network(&client).await;
    let provider = aws_provider(&aws_config("aws", &moto.endpoint_url())).await;
    let launched = within(
        60,
        provider.launch(&request(
            "oob",
            &template("ami-12345678", &subnets, &sg),
            "tok",
            2,
        )),
    )
    .await
    .expect("launch");
    within(
        30,
        client
            .modify_instance_attribute()
            .instance_id(launched[0].id.as_str())
            .instance_type(AttributeValue::builder().value("m5.large").build())
            .send(),
    )
    .await
    .expect("modify instance attribute");
    let inventory = within(60, provider.inventory("oob")).await;
    let types: BTreeMap<&str, &str> = inventory
        .instances
        .iter()
        .map(|i| (i.id.as_str(), i.instance_type.as_str()))
        .collect();
    assert_eq!(types[launched[0].id.as_str()], "m5.large");
    assert_eq!(types[launched[1].id.as_str()], "t3.micro");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_survives_throttling_5xx_and_lost_answers_behind_a_fault_proxy() {
    let moto = MotoServer::start();
    let client = raw_client(&moto.endpoint_url()).await;
    let (subnets, sg) = moto_network(&client).await;
    let proxy = FaultProxy::start(moto.addr());
    let provider = aws_provider(&aws_config("aws", &proxy.endpoint_url())).await;
    let tpl = template("ami-12345678", &subnets[..1], &sg);

    // Throttling and 5xx on every kind of call, each fewer times than max_attempts.
    let rule = |action: &str, fault, times| FaultRule {
        action: Some(action.to_string()),
        fault,
        times,
        after: 0,
    };
    proxy.inject(rule("DescribeInstances", Fault::Throttle, 2));
    proxy.inject(rule("RunInstances", Fault::InternalError, 1));
    proxy.inject(rule("RunInstances", Fault::Throttle, 1));
    proxy.inject(rule("DescribeInstanceStatus", Fault::Unavailable, 2));
    proxy.inject(rule("TerminateInstances", Fault::Throttle, 2));
    let launched = within(60, provider.launch(&request("faulty", &tpl, "tok-1", 3)))
        .await
        .expect("launch survives faults");
    assert_eq!(launched.len(), 3);
    let inventory = within(60, provider.inventory("faulty")).await;
    assert!(inventory.complete, "{:?}", inventory.error);
    assert_eq!(inventory.instances.len(), 3);
    assert!(
        inventory
            .instances
            .iter()
            .all(|i| i.health == InstanceHealth::Healthy)
    );
    within(60, provider.terminate(&[launched[0].id.to_string()]))
        .await
        .expect("terminate survives throttling");
    assert_eq!(proxy.pending_faults(), 0, "every injected fault was hit");
    assert_eq!(proxy.faults_served(), 8);

    // The answer to RunInstances is lost after moto launched (moto ignores ClientToken):
    // the retry finds the launch-token tag and launches nothing more.
    proxy.inject(rule("RunInstances", Fault::InternalErrorAfterForward, 1));
    let launched = within(60, provider.launch(&request("lost", &tpl, "tok-lost", 2)))
        .await
        .expect("launch after a lost answer");
    assert_eq!(launched.len(), 2);
    let raw = within(
        60,
        client
            .describe_instances()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("tag:phoenix:owner")
                    .values("lost")
                    .build(),
            )
            .send(),
    )
    .await
    .expect("raw describe");
    let count: usize = raw.reservations().iter().map(|r| r.instances().len()).sum();
    assert_eq!(count, 2, "exactly one launch reached moto");
    let runs = proxy
        .actions()
        .iter()
        .filter(|a| *a == "RunInstances")
        .count();
    assert_eq!(
        runs,
        3 + 1,
        "3 RunInstances for the first launch, 1 for the second"
    );

    // Faults beyond max_attempts: a typed error, not a hang or a panic.
    proxy.inject(rule("TerminateInstances", Fault::Throttle, 5));
    let err = within(60, provider.terminate(&[launched[0].id.to_string()]))
        .await
        .expect_err("5 throttles with max_attempts 5");
    assert_eq!(err.kind(), ErrorKind::Throttled, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_inventory_with_a_failing_page_is_incomplete_but_keeps_what_it_saw() {
    let moto = MotoServer::start();
    let client = raw_client(&moto.endpoint_url()).await;
    let (subnets, _) = moto_network(&client).await;
    raw_reservations(&client, "partial", &subnets[0], 110).await;
    let proxy = FaultProxy::start(moto.addr());
    let mut config = aws_config("aws", &proxy.endpoint_url());
    config.max_attempts = 2;
    let unpaged = AwsOptions {
        page_size: None,
        ..AwsOptions::default()
    };
    let provider = aws_provider_with(&config, unpaged).await;
    proxy.inject(FaultRule {
        action: Some("DescribeInstances".to_string()),
        fault: Fault::InternalError,
        times: 2,
        after: 1,
    });
    let inventory = within(60, provider.inventory("partial")).await;
    assert!(!inventory.complete);
    let error = inventory.error.expect("the reason is kept");
    assert!(error.contains("DescribeInstances"), "{error}");
    assert_eq!(inventory.instances.len(), 100, "the first page is kept");
}

// ---------------------------------------------------------------------------------
// The sim: knobs, persistence, sharing with another handle.
// ---------------------------------------------------------------------------------

trait Named {
    fn default_named(name: &str) -> SimConfig;
}

impl Named for SimConfig {
    fn default_named(name: &str) -> SimConfig {
        SimConfig {
            name: name.to_string(),
            launch_latency: Duration::ZERO,
            launch_failure_rate: 0.0,
            unhealthy_images: Vec::new(),
            images: Vec::new(),
        }
    }
}

async fn sim_open(state_dir: &Path, config: SimConfig) -> SimProvider {
    within(60, SimProvider::open(&config, state_dir))
        .await
        .expect("open sim")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_persists_across_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tpl = template("ami-1", &["subnet-a".to_string()], "sg-1");
    let req = request("persist", &tpl, "tok-p", 5);
    let launched = {
        let sim = sim_open(dir.path(), SimConfig::default_named("sim")).await;
        let launched = within(60, sim.launch(&req)).await.expect("launch");
        within(
            60,
            sim.modify(&launched[0].id, SimChange::InstanceType("m5.large".into())),
        )
        .await
        .expect("modify type");
        within(
            60,
            sim.modify(&launched[1].id, SimChange::State(InstanceState::Stopped)),
        )
        .await
        .expect("stop");
        within(60, sim.terminate(&[launched[2].id.to_string()]))
            .await
            .expect("terminate");
        launched
    };
    let sim = sim_open(dir.path(), SimConfig::default_named("sim")).await;
    let inventory = within(60, sim.inventory("persist")).await;
    assert!(inventory.complete);
    let by_id: BTreeMap<&str, &phoenix_core::model::Instance> = inventory
        .instances
        .iter()
        .map(|i| (i.id.as_str(), i))
        .collect();
    assert_eq!(by_id.len(), 4);
    assert_eq!(by_id[launched[0].id.as_str()].instance_type, "m5.large");
    assert_eq!(by_id[launched[1].id.as_str()].state, InstanceState::Stopped);
    assert_eq!(
        by_id[launched[1].id.as_str()].health,
        InstanceHealth::Unhealthy
    );
    assert!(!by_id.contains_key(launched[2].id.as_str()));
    assert_eq!(by_id[launched[3].id.as_str()].tags, launched[3].tags);

    // The token survives the restart too: the same step tops up by one, no more.
    let again = within(60, sim.launch(&req)).await.expect("relaunch");
    assert_eq!(again.len(), 5);
    let new: Vec<_> = again
        .iter()
        .filter(|i| !by_id.contains_key(i.id.as_str()))
        .collect();
    assert_eq!(new.len(), 1);
    assert!(
        launched.iter().all(|i| i.id != new[0].id),
        "ids are never reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_knobs_latency_failures_and_unhealthy_images() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = SimConfig::default_named("sim");
    // Long enough that a loaded machine still observes `pending` first.
    config.launch_latency = Duration::from_secs(3);
    config.unhealthy_images = vec!["ami-bad".to_string()];
    let sim = sim_open(dir.path(), config).await;

    let tpl = template("ami-good", &[], "sg-1");
    let launched = within(60, sim.launch(&request("knobs", &tpl, "tok-1", 2)))
        .await
        .expect("launch");
    let inventory = within(60, sim.inventory("knobs")).await;
    assert!(
        inventory
            .instances
            .iter()
            .all(|i| i.state == InstanceState::Pending && i.health == InstanceHealth::Unknown)
    );
    assert!(launched.iter().all(|i| i.subnet_id.is_none()));
    within(10, tokio::time::sleep(Duration::from_millis(3_200))).await;
    let inventory = within(60, sim.inventory("knobs")).await;
    assert!(
        inventory
            .instances
            .iter()
            .all(|i| i.state == InstanceState::Running && i.health == InstanceHealth::Healthy)
    );

    sim.set_launch_latency(Duration::ZERO);
    let bad = template("ami-bad", &[], "sg-1");
    let launched = within(60, sim.launch(&request("knobs-bad", &bad, "tok-2", 1)))
        .await
        .expect("launch");
    let health = within(
        60,
        sim.health(&[launched[0].id.to_string(), "i-nope".to_string()]),
    )
    .await
    .expect("health");
    assert_eq!(health[launched[0].id.as_str()], InstanceHealth::Unhealthy);
    assert_eq!(health["i-nope"], InstanceHealth::Unknown);

    sim.set_launch_failure_rate(1.0).expect("valid rate");
    let err = within(60, sim.launch(&request("knobs", &tpl, "tok-3", 1)))
        .await
        .expect_err("every launch fails");
    assert_eq!(err.kind(), ErrorKind::Capacity);
    assert!(err.is_transient());
    // Nothing to launch means nothing can fail.
    within(60, sim.launch(&request("knobs", &tpl, "tok-1", 2)))
        .await
        .expect("an already complete step does not call the cloud");
    assert_eq!(within(60, sim.inventory("knobs")).await.instances.len(), 2);
    assert_eq!(
        sim.set_launch_failure_rate(1.5)
            .expect_err("out of range")
            .kind(),
        ErrorKind::Config
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_out_of_band_change_from_another_handle_is_seen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = sim_open(dir.path(), SimConfig::default_named("sim")).await;
    let tpl = template("ami-1", &[], "sg-1");
    let launched = within(60, daemon.launch(&request("shared", &tpl, "tok", 2)))
        .await
        .expect("launch");
    // A second handle on the same files, as a test or CLI process would open it.
    let operator = sim_open(dir.path(), SimConfig::default_named("sim")).await;
    within(
        60,
        operator.modify(&launched[0].id, SimChange::InstanceType("c5.xlarge".into())),
    )
    .await
    .expect("modify");
    within(
        60,
        operator.modify(
            &launched[1].id,
            SimChange::SecurityGroups(vec!["sg-9".into()]),
        ),
    )
    .await
    .expect("modify");
    let inventory = within(60, daemon.inventory("shared")).await;
    let by_id: BTreeMap<&str, &phoenix_core::model::Instance> = inventory
        .instances
        .iter()
        .map(|i| (i.id.as_str(), i))
        .collect();
    assert_eq!(by_id[launched[0].id.as_str()].instance_type, "c5.xlarge");
    assert_eq!(*by_id[launched[1].id.as_str()].security_group_ids, ["sg-9"]);
    let err = within(
        60,
        operator.modify("i-00000000000000999", SimChange::Image("x".into())),
    )
    .await
    .expect_err("unknown instance");
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_holds_a_million_instances_across_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tpl = template(
        "ami-1",
        &["subnet-a".to_string(), "subnet-b".to_string()],
        "sg-1",
    );
    {
        let sim = sim_open(dir.path(), SimConfig::default_named("big")).await;
        within(120, sim.launch(&request("big", &tpl, "tok-big", 1_000_000)))
            .await
            .expect("launch a million");
    }
    let sim = sim_open(dir.path(), SimConfig::default_named("big")).await;
    assert_eq!(within(120, sim.len()).await.expect("len"), 1_000_000);
    let small = within(60, sim.launch(&request("small", &tpl, "tok-small", 2)))
        .await
        .expect("launch");
    assert_eq!(small.len(), 2);
    assert_eq!(within(60, sim.inventory("small")).await.instances.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_providers_keys_by_name_and_picks_the_type() {
    let moto = MotoServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let configs = vec![
        ProviderConfig::AwsEc2(aws_config("aws-prod", &moto.endpoint_url())),
        ProviderConfig::Sim(SimConfig::default_named("local")),
    ];
    let options = BuildOptions {
        aws_static_credentials: Some(credentials()),
    };
    let providers: BTreeMap<String, Arc<dyn Provider>> =
        within(60, build_providers(&configs, dir.path(), &options))
            .await
            .expect("build");
    assert_eq!(
        providers.keys().map(String::as_str).collect::<Vec<_>>(),
        vec!["aws-prod", "local"]
    );
    assert_eq!(providers["aws-prod"].type_name(), "aws_ec2");
    assert_eq!(providers["local"].type_name(), "sim");
    let inventory = within(60, providers["aws-prod"].inventory("nobody")).await;
    assert!(inventory.complete, "{:?}", inventory.error);
    assert!(
        dir.path().join("sim/local").is_dir(),
        "the sim lives in the state dir"
    );

    let duplicate = vec![
        ProviderConfig::Sim(SimConfig::default_named("x")),
        ProviderConfig::Sim(SimConfig::default_named("x")),
    ];
    let err = within(60, build_providers(&duplicate, dir.path(), &options))
        .await
        .expect_err("duplicate names");
    assert_eq!(err.kind(), ErrorKind::Config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_seed_creates_what_launch_would_and_persists_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let subnets = vec!["subnet-a".to_string(), "subnet-b".to_string()];
    let tpl = template("ami-seed", &subnets, "sg-1");
    let requests = vec![
        request("seeded", &tpl, "seed-1", 3),
        request("seeded", &tpl, "seed-2", 0),
        request("seeded", &tpl, "seed-3", 2),
    ];
    {
        let sim = sim_open(dir.path(), SimConfig::default_named("sim")).await;
        let created = within(60, sim.seed(requests.clone())).await.expect("seed");
        assert_eq!(created, 5);
    }
    // After a reopen, the seeded instances look exactly like launched ones.
    let sim = sim_open(dir.path(), SimConfig::default_named("sim")).await;
    let inventory = within(60, sim.inventory("seeded")).await;
    assert!(inventory.complete);
    assert_eq!(inventory.instances.len(), 5);
    for instance in &inventory.instances {
        assert_eq!(instance.image, "ami-seed");
        assert_eq!(instance.health, InstanceHealth::Healthy);
        let token = instance.tags.get(tags::LAUNCH_TOKEN).expect("token tag");
        let request = requests
            .iter()
            .find(|r| r.launch_token == token)
            .expect("a seeded token");
        assert_eq!(instance.tags, request.tags());
    }
    let again = within(60, sim.find_by_launch_token("seeded", "seed-1"))
        .await
        .expect("lookup");
    assert_eq!(again.len(), 3);
}

/// Issue 20: the scale endpoint (phoenix-testkit's in-memory EC2, for benchmarks at
/// 300,000 instances) passes the same contract as moto through the real SDK, so it
/// cannot drift from what the provider sees. EC2's default token buckets are on; the
/// provider's retries absorb any throttling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_aws_ec2_on_the_scale_endpoint() {
    use phoenix_testkit::scale_ec2::{Buckets, Latency, ScaleEc2};
    let endpoint = ScaleEc2::start(Latency::default(), Buckets::ec2_defaults());
    // The provider's own rate budgets set to the buckets' refill rates, as an operator
    // sharing an account would (RunInstances' bucket holds only 5).
    let config = AwsEc2Config {
        run_instances_per_second: 2.0,
        describe_per_second: 20.0,
        mutate_per_second: 5.0,
        ..aws_config("aws", &endpoint.endpoint_url())
    };
    let provider = aws_provider(&config).await;
    let subnets = vec!["subnet-0a".to_string(), "subnet-0b".to_string()];
    contract(&provider, &template("ami-12345678", &subnets, "sg-0123")).await;
    let calls = endpoint.calls();
    assert!(
        calls.get("RunInstances").copied().unwrap_or(0) > 0,
        "{calls:?}"
    );
    assert!(
        calls.get("DescribeInstances").copied().unwrap_or(0) > 0,
        "{calls:?}"
    );
}
