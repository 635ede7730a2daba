//! The executor against `aws_ec2` on a real moto server (issue 6, item 5, the smaller
//! run): a rolling replacement to convergence, then a crash right after a launch intent
//! and its launch, recovered by a new executor with no double launch.
//!
//! Needs the moto venv (`scripts/test.sh` creates it); the fixture panics otherwise.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use phoenix_cloud::aws::{AwsEc2Provider, AwsOptions};
use phoenix_cloud::{LaunchRequest, Provider, StaticCredentials};
use phoenix_core::config::{AwsEc2Config, ReconcileConfig};
use phoenix_core::model::Instance;
use phoenix_core::parse_group;
use phoenix_core::plan::{PlanInput, PlanMemory, plan};
use phoenix_core::spec::ParsedGroup;
use phoenix_daemon::executor::{Executor, ExecutorOptions, launch_token};
use phoenix_store::{PlanId, PlanStatus, StepIntent, Store, StoreOptions};
use phoenix_testkit::moto::MotoServer;

const OWNER: &str = "moto-exec";

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("finished within 60 s")
}

fn group(image: &str) -> ParsedGroup {
    parse_group(&format!(
        "apiVersion: phoenix/v1\nkind: InstanceGroup\nmetadata:\n  name: api\nspec:\n  provider: aws\n  replicas: 2\n  template:\n    image: {image}\n    instanceType: t3.micro\n  rollout:\n    strategy: rolling\n    maxSurge: 1\n    maxUnavailable: 0\n    autoRollback: true\n  health:\n    check: provider\n    grace: 0s\n    deadline: 1m\n"
    ))
    .expect("valid group")
}

async fn provider(endpoint: &str) -> Arc<dyn Provider> {
    let config = AwsEc2Config {
        name: "aws".to_string(),
        region: Some("us-east-1".to_string()),
        endpoint_url: Some(endpoint.to_string()),
        profile: None,
        run_instances_per_second: 50.0,
        describe_per_second: 100.0,
        mutate_per_second: 50.0,
        max_attempts: 3,
    };
    let options = AwsOptions {
        static_credentials: Some(StaticCredentials {
            access_key_id: "testing".to_string(),
            secret_access_key: "testing".to_string(),
        }),
        retry_base: Duration::from_millis(10),
        retry_cap: Duration::from_millis(100),
        ..AwsOptions::default()
    };
    Arc::new(
        within(AwsEc2Provider::connect(&config, &options))
            .await
            .expect("connect to moto"),
    )
}

fn executor(provider: &Arc<dyn Provider>) -> Executor {
    let mut providers = BTreeMap::new();
    providers.insert("aws".to_string(), provider.clone());
    Executor::new(OWNER.to_string(), providers, ExecutorOptions::default())
}

async fn members(provider: &Arc<dyn Provider>) -> Vec<Instance> {
    let inv = within(provider.inventory(OWNER)).await;
    assert!(inv.complete, "moto inventory complete: {:?}", inv.error);
    inv.instances
        .into_iter()
        .filter(|i| i.group() == Some("api"))
        .collect()
}

/// Plan, submit, advance until nothing changes; returns the number of passes.
async fn converge(
    exec: &mut Executor,
    store: &mut Store,
    provider: &Arc<dyn Provider>,
    target: &ParsedGroup,
    commit: &str,
) -> u32 {
    let config = ReconcileConfig {
        max_replacements: 10,
        max_replacement_fraction: 1.0,
        ..ReconcileConfig::default()
    };
    let groups = [target.clone()];
    for pass in 1..=20 {
        let now = SystemTime::now();
        let inventory = within(provider.inventory(OWNER)).await;
        let outcome = plan(&PlanInput {
            revision: commit,
            owner: OWNER,
            groups: &groups,
            inventories: &[inventory],
            config: &config,
            memory: &PlanMemory::default(),
            failed: &[],
            images: &phoenix_core::policy::NO_POLICY,
            traffic: &phoenix_core::traffic::NO_TRAFFIC,
            now,
        })
        .expect("plan");
        exec.submit(store, &outcome.document, &groups, commit, now)
            .expect("submit");
        let progress = within(exec.advance(store, now)).await.expect("advance");
        if !outcome.document.changes && store.unfinished_plans().expect("plans").is_empty() {
            return pass;
        }
        tokio::time::sleep(
            progress
                .wake_after
                .unwrap_or_default()
                .min(Duration::from_millis(200)),
        )
        .await;
    }
    panic!("did not converge on moto in 20 passes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_replacement_and_crash_recovery_on_moto() {
    let moto = MotoServer::start();
    let aws = provider(&moto.endpoint_url()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = Store::open(dir.path(), StoreOptions::default()).expect("store");

    // Generation 1 from nothing, then a rolling replacement to generation 2.
    let mut exec = executor(&aws);
    let v1 = group("ami-11111111");
    converge(&mut exec, &mut store, &aws, &v1, "c1").await;
    assert_eq!(members(&aws).await.len(), 2);
    let v2 = group("ami-22222222");
    converge(&mut exec, &mut store, &aws, &v2, "c2").await;
    let now = members(&aws).await;
    assert_eq!(now.len(), 2);
    let h2 = v2.hash.to_string();
    assert!(
        now.iter()
            .all(|i| i.spec_hash() == Some(h2.as_str()) && i.image == "ami-22222222")
    );

    // Generation 3: the daemon dies right after the first launch intent and launch.
    let v3 = group("ami-33333333");
    let inventory = within(aws.inventory(OWNER)).await;
    let at = SystemTime::now();
    let outcome = plan(&PlanInput {
        revision: "c3",
        owner: OWNER,
        groups: std::slice::from_ref(&v3),
        inventories: &[inventory],
        config: &ReconcileConfig {
            max_replacement_fraction: 1.0,
            ..ReconcileConfig::default()
        },
        memory: &PlanMemory::default(),
        failed: &[],
        images: &phoenix_core::policy::NO_POLICY,
        traffic: &phoenix_core::traffic::NO_TRAFFIC,
        now: at,
    })
    .expect("plan");
    exec.submit(
        &mut store,
        &outcome.document,
        std::slice::from_ref(&v3),
        "c3",
        at,
    )
    .expect("submit");
    let id = PlanId::new(outcome.document.groups[0].plan_id.clone().expect("plan id"));
    let token = launch_token(id.as_str(), 0, 1);
    let steps = store.steps(&id).expect("steps");
    let mut detail = steps[0].detail.clone();
    detail["tokens"] = serde_json::json!([token]);
    store
        .write_intent(
            &id,
            0,
            &StepIntent {
                attempt: 1,
                launch_token: Some(token.clone()),
                detail: Some(detail),
            },
            at,
        )
        .expect("intent");
    within(aws.launch(&LaunchRequest {
        owner: OWNER.to_string(),
        group: v3.group.name().clone(),
        template: v3.group.spec.template.clone(),
        spec_hash: v3.hash,
        commit: "c3".to_string(),
        plan_id: id.to_string(),
        launch_token: token.clone(),
        count: 1,
    }))
    .await
    .expect("launch before the crash");
    drop(exec);

    let mut exec = executor(&aws);
    let recovered = within(exec.recover(&mut store, SystemTime::now()))
        .await
        .expect("recover");
    assert!(
        recovered
            .iter()
            .any(|t| t.message().starts_with("recovered after a restart")),
        "{recovered:?}"
    );
    converge(&mut exec, &mut store, &aws, &v3, "c3").await;
    let plan = store.plan(&id).expect("plan").expect("exists");
    assert_eq!(plan.plan.status, PlanStatus::Succeeded);
    let now = members(&aws).await;
    assert_eq!(
        now.len(),
        2,
        "no double launch, old generation gone: {now:?}"
    );
    let h3 = v3.hash.to_string();
    assert!(now.iter().all(|i| i.spec_hash() == Some(h3.as_str())));
    let with_token = within(aws.find_by_launch_token(OWNER, &token))
        .await
        .expect("lookup");
    assert!(
        with_token.len() <= 1,
        "the crashed step's token launched once: {with_token:?}"
    );
}
