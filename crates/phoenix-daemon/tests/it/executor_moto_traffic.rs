//! The executor against `aws_ec2` on moto with a load balancer (issue 16): a group
//! behind an ELBv2 target group is launched and registered, then replaced by a rolling
//! plan; every call goes through the official SDKs to moto, and at the end every target
//! of the target group is a current instance. The real call order is read back from
//! moto's request recorder: each old instance is deregistered before it is terminated,
//! and each new one registered after it was launched. (moto reports `healthy` at once
//! and has no draining window; timing is tested on the sim in `executor_traffic`.)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use phoenix_cloud::aws::{AwsEc2Provider, AwsOptions};
use phoenix_cloud::{Provider, StaticCredentials};
use phoenix_core::config::{AwsEc2Config, ReconcileConfig};
use phoenix_core::parse_group;
use phoenix_core::plan::{PlanInput, PlanMemory, plan};
use phoenix_core::spec::ParsedGroup;
use phoenix_daemon::executor::{Executor, ExecutorOptions};
use phoenix_store::{Store, StoreOptions};
use phoenix_testkit::moto::MotoServer;
use phoenix_testkit::moto_elb::MotoLoadBalancer;

const OWNER: &str = "moto-traffic";

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("finished within 60 s")
}

fn group(image: &str, lb: &MotoLoadBalancer) -> ParsedGroup {
    parse_group(&format!(
        "apiVersion: phoenix/v1\nkind: InstanceGroup\nmetadata:\n  name: web\nspec:\n  provider: aws\n  replicas: 2\n  template:\n    image: {image}\n    instanceType: t3.micro\n    subnetIds: [{}, {}]\n    securityGroupIds: [{}]\n  rollout:\n    strategy: rolling\n    maxSurge: 1\n    maxUnavailable: 0\n  health:\n    check: provider\n    grace: 0s\n    deadline: 1m\n  traffic:\n    targetGroups: [\"{}\"]\n    drain: 5s\n",
        lb.subnet_ids[0], lb.subnet_ids[1], lb.security_group_id, lb.target_group_arn
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

async fn converge(
    exec: &mut Executor,
    store: &mut Store,
    providers: &BTreeMap<String, Arc<dyn Provider>>,
    target: &ParsedGroup,
    commit: &str,
) {
    let config = ReconcileConfig {
        max_replacements: 10,
        max_replacement_fraction: 1.0,
        ..ReconcileConfig::default()
    };
    let groups = [target.clone()];
    for _ in 0..40 {
        let now = SystemTime::now();
        let inventory = within(providers["aws"].inventory(OWNER)).await;
        let traffic = within(phoenix_daemon::traffic::target_health(
            groups.iter().map(|g| g.group.as_ref()),
            providers,
        ))
        .await;
        let outcome = plan(&PlanInput {
            revision: commit,
            owner: OWNER,
            groups: &groups,
            inventories: &[inventory],
            config: &config,
            memory: &PlanMemory::default(),
            failed: &[],
            images: &phoenix_core::policy::NO_POLICY,
            traffic: &traffic,
            now,
        })
        .expect("plan");
        exec.submit(store, &outcome.document, &groups, commit, now)
            .expect("submit");
        let progress = within(exec.advance(store, now)).await.expect("advance");
        if !outcome.document.changes && store.unfinished_plans().expect("plans").is_empty() {
            return;
        }
        tokio::time::sleep(
            progress
                .wake_after
                .unwrap_or_default()
                .min(Duration::from_millis(100)),
        )
        .await;
    }
    panic!("did not converge on moto in 40 passes");
}

/// The recorded ELBv2 and EC2 mutations, in order: (action, instance ids).
fn recorded(moto: &MotoServer) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for body in moto.recorded_bodies() {
        let params: Vec<(String, String)> = body
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.replace("%2D", "-")))
            .collect();
        let Some(action) = params
            .iter()
            .find(|(k, _)| k == "Action")
            .map(|(_, v)| v.clone())
        else {
            continue;
        };
        let ids: Vec<String> = params
            .iter()
            .filter(|(k, _)| {
                k.starts_with("InstanceId.")
                    || (k.starts_with("Targets.member.") && k.ends_with(".Id"))
            })
            .map(|(_, v)| v.clone())
            .collect();
        if matches!(
            action.as_str(),
            "RegisterTargets" | "DeregisterTargets" | "TerminateInstances"
        ) {
            out.push((action, ids));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_behind_a_target_group_is_replaced_with_traffic_moved_first_on_moto() {
    let moto = MotoServer::start();
    let lb = moto.load_balancer("web");
    let aws = provider(&moto.endpoint_url()).await;
    let mut providers: BTreeMap<String, Arc<dyn Provider>> = BTreeMap::new();
    providers.insert("aws".to_string(), aws.clone());
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = Store::open(dir.path(), StoreOptions::default()).expect("store");
    let mut exec = Executor::new(
        OWNER.to_string(),
        providers.clone(),
        ExecutorOptions::default(),
    );

    let v1 = group("ami-11111111", &lb);
    converge(&mut exec, &mut store, &providers, &v1, "c1").await;
    let first: Vec<String> = members(&aws).await;
    assert_eq!(
        moto.target_ids(&lb.target_group_arn),
        first,
        "generation 1 registered"
    );

    moto.start_recording();
    let v2 = group("ami-22222222", &lb);
    converge(&mut exec, &mut store, &providers, &v2, "c2").await;
    let second = members(&aws).await;
    assert_eq!(second.len(), 2);
    assert!(
        second.iter().all(|id| !first.contains(id)),
        "the fleet was replaced"
    );
    assert_eq!(
        moto.target_ids(&lb.target_group_arn),
        second,
        "every target is a current instance"
    );

    let calls = recorded(&moto);
    for old in &first {
        let deregistered = calls
            .iter()
            .position(|(a, ids)| a == "DeregisterTargets" && ids.contains(old))
            .unwrap_or_else(|| panic!("{old} never deregistered: {calls:?}"));
        let terminated = calls
            .iter()
            .position(|(a, ids)| a == "TerminateInstances" && ids.contains(old))
            .unwrap_or_else(|| panic!("{old} never terminated: {calls:?}"));
        assert!(deregistered < terminated, "{old}: {calls:?}");
    }
    for new in &second {
        assert!(
            calls
                .iter()
                .any(|(a, ids)| a == "RegisterTargets" && ids.contains(new)),
            "{new} registered: {calls:?}"
        );
    }
}

async fn members(provider: &Arc<dyn Provider>) -> Vec<String> {
    let inv = within(provider.inventory(OWNER)).await;
    assert!(inv.complete, "moto inventory complete: {:?}", inv.error);
    let mut ids: Vec<String> = inv
        .instances
        .into_iter()
        .filter(|i| i.group() == Some("web") && i.state.is_live())
        .map(|i| i.id.to_string())
        .collect();
    ids.sort();
    ids
}
