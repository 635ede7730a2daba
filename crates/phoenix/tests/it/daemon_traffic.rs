//! `phoenix run` with a group behind a sim target group (issue 16): the fleet is
//! launched and registered, the group detail shows each instance's state in the target
//! group, `/metrics` counts the instances in service, a new image is rolled out with
//! traffic moved first (the sim records no terminate of an attached instance), and at
//! the end every target of the target group is a current instance.

use std::time::Duration;

use crate::support::Daemon;

const TG: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef";

fn web(image: &str) -> String {
    format!(
        "apiVersion: phoenix/v1
kind: InstanceGroup
metadata:
  name: web
spec:
  provider: local
  replicas: 2
  template:
    image: {image}
    instanceType: t3.micro
  health: {{grace: 0s, deadline: 1m}}
  traffic:
    targetGroups: [\"{TG}\"]
"
    )
}

fn config() -> String {
    format!(
        "owner: e2e
source: {{dir: {{path: desired, watch: true, interval: 1s}}}}
providers:
  - name: local
    type: sim
    target_groups:
      - {{name: \"{TG}\", registration_delay: 300ms, deregistration_delay: 500ms}}
reconcile: {{interval: 1s, mode: enforce}}
state: {{path: state}}
server: {{listen: \"{{LISTEN}}\"}}
"
    )
}

/// Every instance of the group with its hash and traffic states, from the API.
fn instances(d: &Daemon) -> Vec<(String, String, Vec<String>)> {
    let group = d.json("/api/v1/groups/web");
    group["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|i| {
            let traffic = i["traffic"]
                .as_array()
                .map(|t| {
                    t.iter()
                        .map(|x| {
                            format!(
                                "{}={}",
                                x["target_group"].as_str().unwrap_or(""),
                                x["state"].as_str().unwrap_or("")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            (
                i["id"].as_str().unwrap_or_default().to_string(),
                i["spec_hash"].as_str().unwrap_or_default().to_string(),
                traffic,
            )
        })
        .collect()
}

fn in_sync_and_in_service(d: &Daemon) -> bool {
    let group = d.json("/api/v1/groups/web");
    let all = instances(d);
    group["sync"] == "in_sync"
        && all.len() == 2
        && all.iter().all(|(_, hash, t)| {
            group["desired_hash"] == hash.as_str() && t == &[format!("{TG}=healthy")]
        })
}

#[test]
fn a_group_behind_a_target_group_is_replaced_with_traffic_moved_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("desired")).expect("mkdir");
    std::fs::write(dir.path().join("desired/web.yaml"), web("ami-1")).expect("write group");
    let mut daemon = Daemon::start(dir.path(), &config(), &[]);
    daemon.wait_for(
        "generation 1 in service",
        Duration::from_secs(60),
        in_sync_and_in_service,
    );
    let first: Vec<String> = instances(&daemon).into_iter().map(|i| i.0).collect();
    let (_, metrics) = daemon.get("/metrics");
    assert!(
        metrics.contains("phoenix_traffic_in_service{group=\"web\"} 2"),
        "{metrics}"
    );

    std::fs::write(dir.path().join("desired/web.yaml"), web("ami-2")).expect("write group");
    daemon.wait_for("generation 2 in service", Duration::from_secs(90), |d| {
        in_sync_and_in_service(d) && instances(d).iter().all(|i| !first.contains(&i.0))
    });
    let plans = daemon.json("/api/v1/plans");
    let text = plans.to_string();
    for action in ["register", "wait_in_service", "deregister", "wait_drained"] {
        assert!(
            text.contains(&format!("\"{action}\"")),
            "plans show {action}: {text}"
        );
    }
    daemon.terminate(Duration::from_secs(30));
    let targets = std::fs::read_to_string(dir.path().join("state/sim/local/targets.json"))
        .expect("the sim's target groups");
    let targets: serde_json::Value = serde_json::from_str(&targets).expect("json");
    assert!(
        targets["violations"]
            .as_array()
            .is_none_or(|v| v.is_empty()),
        "no terminate of a registered or draining instance: {targets}"
    );
    let registered: Vec<&String> = targets["groups"][TG]
        .as_object()
        .expect("the target group")
        .keys()
        .collect();
    assert_eq!(registered.len(), 2, "{targets}");
    assert!(registered.iter().all(|id| !first.contains(id)), "{targets}");
}
