//! The whole daemon with a load balancer (issue 16): a repository served by `git
//! daemon`, moto as the cloud with an ALB and an instance target group (made through
//! moto's query API by `phoenix_testkit::moto_elb`), `phoenix run` as a child process.
//! The first generation is launched and registered; a git push of a new image replaces
//! the fleet, and at the end every target of the group's target group is a current
//! instance and the API shows each of them `healthy` there.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::Daemon;
use phoenix_testkit::git::{GitDaemon, RepoHost, WorkRepo};
use phoenix_testkit::moto::MotoServer;
use phoenix_testkit::moto_elb::MotoLoadBalancer;
use serde_json::Value;

fn group(image: &str, lb: &MotoLoadBalancer) -> String {
    format!(
        "apiVersion: phoenix/v1
kind: InstanceGroup
metadata:
  name: web
spec:
  provider: aws
  replicas: 2
  template:
    image: {image}
    instanceType: t3.micro
    subnetIds: [{}, {}]
    securityGroupIds: [{}]
  rollout: {{maxSurge: 1, maxUnavailable: 0}}
  health: {{check: provider, grace: 0s, deadline: 2m}}
  traffic: {{targetGroups: [\"{}\"], drain: 5s}}
",
        lb.subnet_ids[0], lb.subnet_ids[1], lb.security_group_id, lb.target_group_arn
    )
}

/// In sync with 2 instances on the desired hash, each `healthy` in the target group.
fn converged(group: &Value, tg: &str) -> bool {
    let instances = group["instances"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    group["sync"] == "in_sync"
        && instances.len() == 2
        && instances.iter().all(|i| {
            i["spec_hash"] == group["desired_hash"]
                && i["traffic"] == serde_json::json!([{"target_group": tg, "state": "healthy"}])
        })
}

fn ids(group: &Value) -> Vec<String> {
    let mut out: Vec<String> = group["instances"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|i| i["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn git_push_replaces_a_fleet_behind_a_target_group_on_moto() {
    let moto = MotoServer::start();
    let lb = moto.load_balancer("web");
    let tg = lb.target_group_arn.clone();
    let host = RepoHost::new();
    let bare = host.create("infra");
    let git_daemon = GitDaemon::start(host.path());
    let work = WorkRepo::new(&bare);
    work.write("groups/web.yaml", &group("ami-00000000000000001", &lb));
    work.commit("web on image 1");
    work.push();

    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "owner: e2e-traffic
source:
  git: {{url: \"{url}\", branch: main, path: groups, interval: 1s}}
providers:
  - {{name: aws, type: aws_ec2, region: us-east-1, endpoint_url: \"{endpoint}\"}}
reconcile: {{interval: 1s, mode: enforce}}
state: {{path: state}}
server: {{listen: \"{{LISTEN}}\"}}
",
        url = git_daemon.url("infra"),
        endpoint = moto.endpoint_url(),
    );
    let env = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let mut daemon = Daemon::start(dir.path(), &config, &env);
    daemon.wait_for("generation 1 in service", Duration::from_secs(90), |d| {
        converged(&d.json("/api/v1/groups/web"), &tg)
    });
    let first = ids(&daemon.json("/api/v1/groups/web"));
    assert_eq!(moto.target_ids(&tg), first, "generation 1 registered");
    assert_eq!(
        daemon.json("/api/v1/groups/web")["target_groups"],
        serde_json::json!([tg.clone()])
    );

    work.write("groups/web.yaml", &group("ami-00000000000000002", &lb));
    work.commit("web on image 2");
    work.push();
    daemon.wait_for("generation 2 in service", Duration::from_secs(120), |d| {
        let g = d.json("/api/v1/groups/web");
        converged(&g, &tg) && ids(&g).iter().all(|id| !first.contains(id))
    });
    let second = ids(&daemon.json("/api/v1/groups/web"));
    let targets: BTreeSet<String> = moto.target_ids(&tg).into_iter().collect();
    assert_eq!(
        targets,
        second.iter().cloned().collect::<BTreeSet<_>>(),
        "every target is a current instance"
    );
    daemon.terminate(Duration::from_secs(30));
}
