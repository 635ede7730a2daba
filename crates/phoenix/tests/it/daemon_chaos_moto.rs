//! Whole-daemon fault chaos on moto (issue 17): `phoenix run` itself, not a driver
//! binary, replaces a fleet on moto behind the testkit's fault proxy, which injects
//! throttling bursts, 5xx answers, answers lost after the request took effect, resets
//! and slow answers, while the test SIGKILLs and restarts the daemon at random points
//! (`PHOENIX_DAEMON_CHAOS_KILLS`, default 30; seed `PHOENIX_DAEMON_CHAOS_SEED`).
//!
//! A sampler reads moto directly (not through the proxy) every 200 ms and checks, at
//! every sample: no group has more live instances than its surge allows (a duplicate
//! launch would show), no group dips below its floor of running instances, and the
//! instances Phoenix does not own (another owner's claim on the same group, an untagged
//! one) are never terminated. At the end, with faults and kills stopped, the fleet must
//! converge: every group in sync with exactly its replicas on the last image.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::Daemon;
use phoenix_testkit::moto::{Fault, FaultProxy, FaultRule, MotoServer, http_request};

const OWNER: &str = "chaos";

/// Headers of a query-API request moto routes to EC2 (it reads the service from the
/// credential scope; the signature is not checked).
const EC2_HEADERS: [(&str, &str); 2] = [
    ("Content-Type", "application/x-www-form-urlencoded"),
    (
        "Authorization",
        "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0",
    ),
];

/// A group of the scenario and its bounds.
struct Group {
    name: &'static str,
    replicas: usize,
    /// Most instances alive at once (replicas plus surge; blue-green runs two fleets).
    most_alive: usize,
    /// Fewest running instances once the first generation is up.
    floor: usize,
    rollout: &'static str,
}

const GROUPS: [Group; 2] = [
    Group {
        name: "web",
        replicas: 4,
        most_alive: 5,
        floor: 3,
        rollout: "{strategy: rolling, maxSurge: 1, maxUnavailable: 1}",
    },
    Group {
        name: "api",
        replicas: 2,
        most_alive: 4,
        floor: 2,
        rollout: "{strategy: blue-green}",
    },
];

fn spec(group: &Group, image: &str) -> String {
    format!(
        "apiVersion: phoenix/v1
kind: InstanceGroup
metadata:
  name: {name}
spec:
  provider: aws
  replicas: {replicas}
  template:
    image: {image}
    instanceType: t3.micro
  rollout: {rollout}
  health: {{check: provider, grace: 0s, deadline: 2m}}
",
        name = group.name,
        replicas = group.replicas,
        rollout = group.rollout,
    )
}

fn write_generation(dir: &std::path::Path, generation: u32) {
    for group in &GROUPS {
        let image = format!("ami-{generation:017}");
        std::fs::write(
            dir.join(format!("desired/{}.yaml", group.name)),
            spec(group, &image),
        )
        .expect("write group");
    }
}

/// A small deterministic generator (xorshift64*), so a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One instance as moto lists it.
#[derive(Debug, Clone)]
struct Seen {
    id: String,
    state: String,
    tags: BTreeMap<String, String>,
}

impl Seen {
    fn alive(&self) -> bool {
        self.state == "pending" || self.state == "running"
    }
}

/// The text between `<tag>` and `</tag>` in `text` (the first such element).
fn element<'t>(text: &'t str, tag: &str) -> Option<&'t str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&close)?;
    Some(&text[start..end])
}

/// The text of the child element `name` of `node`.
fn child<'a>(node: roxmltree::Node<'a, 'a>, name: &str) -> Option<roxmltree::Node<'a, 'a>> {
    node.children().find(|c| c.has_tag_name(name))
}

/// Every instance moto has (any state), read straight from moto.
fn describe(moto: SocketAddr) -> Vec<Seen> {
    let body = "Action=DescribeInstances&Version=2016-11-15";
    let (status, response) = http_request(moto, "POST", "/", &EC2_HEADERS, body.as_bytes());
    let text = String::from_utf8_lossy(&response);
    assert_eq!(status, 200, "DescribeInstances on moto: {text}");
    let doc = roxmltree::Document::parse(&text).expect("DescribeInstances answers XML");
    let mut seen = Vec::new();
    for set in doc.descendants().filter(|n| n.has_tag_name("instancesSet")) {
        for item in set.children().filter(|n| n.has_tag_name("item")) {
            let text_of = |n: Option<roxmltree::Node<'_, '_>>| {
                n.and_then(|n| n.text()).unwrap_or_default().to_owned()
            };
            let id = text_of(child(item, "instanceId"));
            let state = text_of(child(item, "instanceState").and_then(|s| child(s, "name")));
            let mut tags = BTreeMap::new();
            if let Some(set) = child(item, "tagSet") {
                for tag in set.children().filter(|n| n.has_tag_name("item")) {
                    tags.insert(text_of(child(tag, "key")), text_of(child(tag, "value")));
                }
            }
            seen.push(Seen { id, state, tags });
        }
    }
    seen
}

/// Launch one instance on moto directly, with these tags (not through Phoenix).
fn launch_foreign(moto: SocketAddr, tags: &[(&str, &str)]) -> String {
    let mut body = String::from(
        "Action=RunInstances&Version=2016-11-15&ImageId=ami-00000000000000999&MinCount=1&MaxCount=1&InstanceType=t3.micro",
    );
    if !tags.is_empty() {
        body.push_str("&TagSpecification.1.ResourceType=instance");
        for (i, (k, v)) in tags.iter().enumerate() {
            let k = k.replace(':', "%3A");
            body.push_str(&format!(
                "&TagSpecification.1.Tag.{n}.Key={k}&TagSpecification.1.Tag.{n}.Value={v}",
                n = i + 1
            ));
        }
    }
    let (status, response) = http_request(moto, "POST", "/", &EC2_HEADERS, body.as_bytes());
    let text = String::from_utf8_lossy(&response).into_owned();
    assert_eq!(status, 200, "RunInstances on moto: {text}");
    element(&text, "instanceId")
        .unwrap_or_else(|| panic!("no instance id in {text}"))
        .to_owned()
}

/// What one sample of moto breaks, if anything.
fn violations(seen: &[Seen], foreign: &[String], floors: bool) -> Vec<String> {
    let mut found = Vec::new();
    for id in foreign {
        match seen.iter().find(|s| &s.id == id) {
            Some(s) if s.alive() => {}
            other => found.push(format!("foreign instance {id} is gone: {other:?}")),
        }
    }
    for group in &GROUPS {
        let ours: Vec<&Seen> = seen
            .iter()
            .filter(|s| {
                s.tags.get("phoenix:owner").map(String::as_str) == Some(OWNER)
                    && s.tags.get("phoenix:group").map(String::as_str) == Some(group.name)
            })
            .collect();
        let alive = ours.iter().filter(|s| s.alive()).count();
        let running = ours.iter().filter(|s| s.state == "running").count();
        if alive > group.most_alive {
            found.push(format!(
                "{}: {alive} instances alive, more than {} (a duplicate launch)",
                group.name, group.most_alive
            ));
        }
        if floors && running < group.floor {
            let states: Vec<String> = ours
                .iter()
                .filter(|s| s.state != "terminated")
                .map(|s| {
                    format!(
                        "{} {} {}",
                        s.id,
                        s.state,
                        s.tags
                            .get("phoenix:spec-hash")
                            .map_or("", |h| &h[h.len() - 6..])
                    )
                })
                .collect();
            found.push(format!(
                "{}: {running} running, below the floor {}: {states:?}",
                group.name, group.floor
            ));
        }
    }
    found
}

/// A random fault rule: what a flaky EC2 endpoint does.
fn random_fault(rng: &mut Rng) -> FaultRule {
    let mutating = ["RunInstances", "TerminateInstances"];
    let (fault, times, action) = match rng.below(8) {
        0 | 1 => (Fault::Throttle, 3 + rng.below(8) as usize, None),
        2 => (Fault::InternalError, 1 + rng.below(3) as usize, None),
        3 => (Fault::Unavailable, 1 + rng.below(3) as usize, None),
        4 => (
            Fault::InternalErrorAfterForward,
            1,
            Some(mutating[rng.below(2) as usize]),
        ),
        5 => (
            Fault::ResetAfterForward,
            1,
            Some(mutating[rng.below(2) as usize]),
        ),
        6 => (Fault::Reset, 1 + rng.below(3) as usize, None),
        _ => (
            Fault::Slow(300 + rng.below(2500)),
            1 + rng.below(3) as usize,
            None,
        ),
    };
    FaultRule {
        action: action.map(str::to_owned),
        fault,
        times,
        after: rng.below(4) as usize,
    }
}

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
}

/// Every group in sync with exactly its replicas, all on the desired hash.
fn converged(daemon: &Daemon) -> bool {
    GROUPS.iter().all(|group| {
        let detail = daemon.json(&format!("/api/v1/groups/{}", group.name));
        let instances = detail["instances"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        detail["sync"] == "in_sync"
            && instances.len() == group.replicas
            && instances
                .iter()
                .all(|i| i["spec_hash"] == detail["desired_hash"] && i["state"] == "running")
    })
}

/// Every plan with its steps, for a failure message.
fn plans_text(daemon: &Daemon) -> String {
    let list = daemon.json("/api/v1/plans");
    let mut text = String::new();
    for plan in list["plans"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let id = plan["id"].as_str().unwrap_or_default();
        text.push_str(&format!(
            "{}\n",
            daemon.json(&format!("/api/v1/plans/{id}"))
        ));
    }
    text
}

#[test]
fn phoenix_run_survives_faults_and_kills_on_moto() {
    let kills: u32 = std::env::var("PHOENIX_DAEMON_CHAOS_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let seed: u64 = std::env::var("PHOENIX_DAEMON_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_cafe);
    eprintln!("daemon chaos: seed {seed}, {kills} kills");
    let moto = MotoServer::start();
    let proxy = Arc::new(FaultProxy::start(moto.addr()));
    let foreign = vec![
        launch_foreign(
            moto.addr(),
            &[("phoenix:owner", "other"), ("phoenix:group", "web")],
        ),
        launch_foreign(moto.addr(), &[]),
    ];

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("desired")).expect("mkdir");
    write_generation(dir.path(), 1);
    let config = format!(
        "owner: {OWNER}
source: {{dir: {{path: desired, watch: false, interval: 1s}}}}
providers:
  - {{name: aws, type: aws_ec2, region: us-east-1, endpoint_url: \"{endpoint}\"}}
reconcile: {{interval: 1s, mode: enforce}}
state: {{path: state}}
server: {{listen: \"{{LISTEN}}\"}}
",
        endpoint = proxy.endpoint_url(),
    );
    let env = env();
    let mut daemon = Daemon::start(dir.path(), &config, &env);
    daemon.wait_for("generation 1 up", Duration::from_secs(120), converged);

    // The sampler checks every invariant against moto itself until told to stop.
    let done = Arc::new(AtomicBool::new(false));
    let calm = Arc::new(AtomicBool::new(false));
    let broken: Arc<Mutex<Vec<String>>> = Arc::default();
    let samples = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sampler = {
        let (done, broken, samples) = (done.clone(), broken.clone(), samples.clone());
        let (moto_addr, foreign) = (moto.addr(), foreign.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                let seen = describe(moto_addr);
                let found = violations(&seen, &foreign, true);
                samples.fetch_add(1, Ordering::SeqCst);
                broken.lock().expect("lock").extend(found);
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    // Faults arrive all the time, a few pending at once.
    let injector = {
        let (calm, proxy) = (calm.clone(), proxy.clone());
        std::thread::spawn(move || {
            let mut rng = Rng(seed ^ 0xfa17);
            while !calm.load(Ordering::SeqCst) {
                if proxy.pending_faults() < 6 {
                    proxy.inject(random_fault(&mut rng));
                }
                std::thread::sleep(Duration::from_millis(150 + rng.below(400)));
            }
        })
    };

    let mut rng = Rng(seed);
    let mut generation = 1;
    let started = Instant::now();
    for kill in 0..kills {
        if kill.is_multiple_of(5) {
            generation += 1;
            write_generation(dir.path(), generation);
        }
        std::thread::sleep(Duration::from_millis(200 + rng.below(3000)));
        daemon.restart(&env);
        let broken_now = broken.lock().expect("lock").clone();
        assert!(
            broken_now.is_empty(),
            "seed {seed}, kill {kill}, generation {generation}: {broken_now:?}\nplans:\n{}\nlog:\n{}",
            plans_text(&daemon),
            daemon.log_text()
        );
    }
    // Calm: no faults, no kills; the fleet converges on the last generation.
    calm.store(true, Ordering::SeqCst);
    injector.join().expect("injector");
    proxy.clear();
    daemon.wait_for(
        &format!("generation {generation} converged after the chaos"),
        Duration::from_secs(180),
        converged,
    );
    done.store(true, Ordering::SeqCst);
    sampler.join().expect("sampler");
    let last = describe(moto.addr());
    let mut found = violations(&last, &foreign, true);
    found.extend(broken.lock().expect("lock").iter().cloned());
    for group in &GROUPS {
        let alive = last
            .iter()
            .filter(|s| {
                s.alive()
                    && s.tags.get("phoenix:owner").map(String::as_str) == Some(OWNER)
                    && s.tags.get("phoenix:group").map(String::as_str) == Some(group.name)
            })
            .count();
        if alive != group.replicas {
            found.push(format!(
                "{}: {alive} alive at the end, not {}",
                group.name, group.replicas
            ));
        }
    }
    eprintln!(
        "daemon chaos: {kills} kills, {generation} generations, {} requests, {} faults, {} samples in {:.0?}",
        proxy.requests(),
        proxy.faults_served(),
        samples.load(Ordering::SeqCst),
        started.elapsed()
    );
    assert!(proxy.faults_served() > 0, "no fault was served");
    assert!(found.is_empty(), "seed {seed}: {found:?}");
}
