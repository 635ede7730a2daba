//! Change windows in the running daemon (issue 21, item 2: "a deny window holds a
//! replacement and lets a failed instance be replaced"): on the sim cloud, a group whose
//! two instances are outdated, one of them stopped, under a deny window that is open the
//! whole test. The daemon replaces the stopped (unhealthy) instance and keeps the healthy
//! outdated one; without the window it replaces both.

use std::time::Duration;

use phoenix_cloud::sim::{SimChange, SimProvider};
use phoenix_cloud::{LaunchRequest, Provider};
use phoenix_core::config::SimConfig;
use phoenix_core::model::InstanceState;
use phoenix_core::parse_group;

use crate::support::Daemon;

fn web(image: &str) -> String {
    format!(
        "apiVersion: phoenix/v1\nkind: InstanceGroup\nmetadata:\n  name: web\nspec:\n  provider: local\n  replicas: 2\n  template:\n    image: {image}\n    instanceType: t3.micro\n  rollout: {{maxSurge: 1, maxUnavailable: 0}}\n"
    )
}

/// Open every day at midnight UTC for two days: always open.
const CONFIG: &str = "owner: e2e-windows
source: {dir: {path: desired, watch: true, interval: 1s}}
providers:
  - {name: local, type: sim}
reconcile:
  interval: 1s
  mode: enforce
  max_replacement_fraction: 1.0
  windows:
    - {kind: deny, schedule: \"0 0 * * *\", duration: 48h, groups: [\"web\"]}
state: {path: state}
server: {listen: \"{LISTEN}\"}
";

/// Two instances of web at ami-1 in the sim under `dir/state`, the first one stopped.
fn seed(dir: &std::path::Path) -> (String, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let config = SimConfig {
            name: "local".into(),
            launch_latency: Duration::ZERO,
            launch_failure_rate: 0.0,
            unhealthy_images: Vec::new(),
            images: Vec::new(),
            target_groups: Vec::new(),
        };
        let sim = SimProvider::open(&config, &dir.join("state"))
            .await
            .expect("open the sim");
        let parsed = parse_group(&web("ami-1")).expect("valid group");
        let launched = sim
            .launch(&LaunchRequest {
                owner: "e2e-windows".into(),
                group: parsed.group.name().clone(),
                template: parsed.group.spec.template.clone(),
                spec_hash: parsed.hash,
                commit: "old".into(),
                plan_id: "plan-old".into(),
                launch_token: "token-old".into(),
                count: 2,
            })
            .await
            .expect("launch");
        let mut ids: Vec<String> = launched.iter().map(|i| i.id.to_string()).collect();
        ids.sort();
        sim.modify(&ids[0], SimChange::State(InstanceState::Stopped))
            .await
            .expect("stop one instance");
        (ids[0].clone(), ids[1].clone())
    })
}

fn instance_ids(daemon: &Daemon) -> Vec<(String, String)> {
    daemon.json("/api/v1/groups/web")["instances"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|i| {
                    (
                        i["id"].as_str().unwrap_or("").to_owned(),
                        i["spec_hash"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_deny_window_holds_a_replacement_but_replaces_a_failed_instance() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("desired")).expect("mkdir");
    let (stopped, healthy) = seed(dir.path());
    std::fs::write(dir.path().join("desired/web.yaml"), web("ami-2")).expect("write group");
    let mut daemon = Daemon::start(dir.path(), CONFIG, &[]);
    let desired = daemon.json("/api/v1/groups/web")["desired_hash"]
        .as_str()
        .expect("desired hash")
        .to_owned();

    // The stopped instance is replaced by one of the new generation.
    daemon.wait_for(
        "the stopped instance to be replaced",
        Duration::from_secs(60),
        |d| {
            let ids = instance_ids(d);
            !ids.iter().any(|(id, _)| *id == stopped)
                && ids.iter().filter(|(_, h)| *h == desired).count() == 1
        },
    );
    // The healthy outdated instance stays, pass after pass.
    std::thread::sleep(Duration::from_secs(4));
    let ids = instance_ids(&daemon);
    assert!(ids.iter().any(|(id, _)| *id == healthy), "held: {ids:?}");
    assert_eq!(ids.len(), 2, "{ids:?}");
    let group = daemon.json("/api/v1/groups/web");
    assert_eq!(group["sync"], "drifted", "{group}");

    // Without the window, the held replacement goes ahead.
    daemon.terminate(Duration::from_secs(30));
    let open = CONFIG.replace(
        "    - {kind: deny, schedule: \"0 0 * * *\", duration: 48h, groups: [\"web\"]}\n",
        "    - {kind: deny, schedule: \"0 0 * * *\", duration: 48h, groups: [\"api\"]}\n",
    );
    assert_ne!(open, CONFIG);
    let daemon = Daemon::start(dir.path(), &open, &[]);
    daemon.wait_for("web to be replaced", Duration::from_secs(60), |d| {
        let ids = instance_ids(d);
        ids.len() == 2 && ids.iter().all(|(_, h)| *h == desired)
    });
}
