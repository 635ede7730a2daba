//! Inventory benchmarks, printed as a table (a bench binary, not criterion: the baseline
//! is another program, boto3, measured in the same run against the same moto server).
//!
//! - sim: inventory of 300,000 instances of one owner among 350,000 (goal < 200 ms);
//!   also reopening a sim of 1,000,000 instances from disk.
//! - aws_ec2 on moto: inventory of 1,000 instances vs boto3's DescribeInstances
//!   paginator (scripts/bench_boto3_inventory.py) over the same server (goal: not
//!   slower).
//!
//! - aws_ec2 on the scale endpoint (phoenix-testkit's in-memory EC2, issue 20): inventory
//!   of 300,000 instances with 200 ms per call and EC2's token buckets, against the floor
//!   those set (pages of 1,000: the first 100 calls at once, the rest at 20/s, plus one
//!   call's latency), and the calls it spent per 1,000 instances.
//!
//! `PHOENIX_BENCH_SIZE=small` shrinks every size so CI runs it in seconds.
//! Run: `cargo bench -p phoenix-cloud --bench inventory`.

use std::process::Command;
use std::time::{Duration, Instant};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use phoenix_cloud::aws::{AwsEc2Provider, AwsOptions};
use phoenix_cloud::sim::SimProvider;
use phoenix_cloud::{LaunchRequest, Provider, StaticCredentials};
use phoenix_core::config::{AwsEc2Config, SimConfig};
use phoenix_core::spec::GroupName;
use phoenix_core::{Template, spec_hash, tags};
use phoenix_testkit::moto::{MotoServer, venv_bin};

struct Sizes {
    scale_instances: usize,
    scale_latency: Duration,
    sim_owned: u32,
    sim_noise: u32,
    sim_reopen: u32,
    moto_instances: u32,
    runs: usize,
}

fn sizes() -> Sizes {
    if std::env::var("PHOENIX_BENCH_SIZE").as_deref() == Ok("small") {
        Sizes {
            scale_instances: 5_000,
            scale_latency: Duration::from_millis(20),
            sim_owned: 20_000,
            sim_noise: 2_000,
            sim_reopen: 50_000,
            moto_instances: 100,
            runs: 2,
        }
    } else {
        Sizes {
            scale_instances: 300_000,
            scale_latency: Duration::from_millis(200),
            sim_owned: 300_000,
            sim_noise: 50_000,
            sim_reopen: 1_000_000,
            moto_instances: 1_000,
            runs: 5,
        }
    }
}

fn template() -> Template {
    serde_json::from_value(serde_json::json!({
        "image": "ami-12345678",
        "instanceType": "t3.micro",
        "subnetIds": [],
        "securityGroupIds": [],
        "tags": {"env": "prod", "team": "web"},
    }))
    .expect("valid template")
}

fn request(owner: &str, token: &str, count: u32) -> LaunchRequest {
    let group = GroupName::new("web").expect("valid name");
    let template = template();
    LaunchRequest {
        owner: owner.to_string(),
        spec_hash: spec_hash(group.as_str(), &template),
        group,
        template,
        commit: "0123456789abcdef0123456789abcdef01234567".to_string(),
        plan_id: "plan-1".to_string(),
        launch_token: token.to_string(),
        count,
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn bench_sim(sizes: &Sizes) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = SimConfig {
        name: "bench".to_string(),
        launch_latency: Duration::ZERO,
        launch_failure_rate: 0.0,
        unhealthy_images: Vec::new(),
        images: Vec::new(),
    };
    let sim = SimProvider::open(&config, dir.path())
        .await
        .expect("open sim");
    // Launch in steps of 1,000 like a big fleet built by many plans.
    let steps = sizes.sim_owned.div_ceil(1_000);
    for step in 0..steps {
        let count = 1_000.min(sizes.sim_owned - step * 1_000);
        sim.launch(&request("acme", &format!("plan-{step}/step-0"), count))
            .await
            .expect("launch");
    }
    sim.launch(&request("someone-else", "noise", sizes.sim_noise))
        .await
        .expect("launch noise");
    let mut times = Vec::new();
    for _ in 0..sizes.runs.max(3) {
        let t0 = Instant::now();
        let inventory = sim.inventory("acme").await;
        times.push(t0.elapsed());
        assert!(inventory.complete);
        assert_eq!(inventory.instances.len(), sizes.sim_owned as usize);
    }
    let inventory_ms = ms(median(times));
    println!(
        "sim inventory: {} instances (of {}): median {:.1} ms (goal < 200 ms; ratio to goal {:.2})",
        sizes.sim_owned,
        sizes.sim_owned + sizes.sim_noise,
        inventory_ms,
        inventory_ms / 200.0
    );

    let big_dir = tempfile::tempdir().expect("tempdir");
    let big = SimProvider::open(&config, big_dir.path())
        .await
        .expect("open");
    let t0 = Instant::now();
    big.launch(&request("acme", "big", sizes.sim_reopen))
        .await
        .expect("launch");
    let launch = t0.elapsed();
    drop(big);
    let t0 = Instant::now();
    let big = SimProvider::open(&config, big_dir.path())
        .await
        .expect("reopen");
    let reopen = t0.elapsed();
    assert_eq!(big.len().await.expect("len"), sizes.sim_reopen as usize);
    println!(
        "sim holding {} instances: launch {:.0} ms, reopen from disk {:.0} ms",
        sizes.sim_reopen,
        ms(launch),
        ms(reopen)
    );
}

async fn bench_moto(sizes: &Sizes) {
    let moto = MotoServer::start();
    let endpoint = moto.endpoint_url();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&endpoint)
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "testing", "testing", None, None, "bench",
        ))
        .load()
        .await;
    let client = Client::new(&sdk);
    let vpc = client
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await
        .expect("vpc");
    let vpc_id = vpc.vpc().and_then(|v| v.vpc_id()).expect("vpc id");
    let subnet = client
        .create_subnet()
        .vpc_id(vpc_id)
        .cidr_block("10.0.0.0/18")
        .send()
        .await
        .expect("subnet");
    let subnet_id = subnet
        .subnet()
        .and_then(|s| s.subnet_id())
        .expect("subnet id");
    // 5 instances per reservation: 1,000 instances are 200 reservations, so a
    // paginator with moto's default page (100 reservations) makes 2 calls.
    let per_reservation = 5;
    for _ in 0..sizes.moto_instances / per_reservation {
        client
            .run_instances()
            .image_id("ami-12345678")
            .instance_type("t3.micro".into())
            .min_count(per_reservation as i32)
            .max_count(per_reservation as i32)
            .subnet_id(subnet_id)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .tags(Tag::builder().key(tags::OWNER).value("acme").build())
                    .tags(Tag::builder().key(tags::GROUP).value("web").build())
                    .build(),
            )
            .send()
            .await
            .expect("run instances");
    }

    let config = AwsEc2Config {
        name: "bench".to_string(),
        region: Some("us-east-1".to_string()),
        endpoint_url: Some(endpoint.clone()),
        profile: None,
        run_instances_per_second: 2.0,
        describe_per_second: 20.0,
        mutate_per_second: 5.0,
        max_attempts: 5,
    };
    let creds = StaticCredentials {
        access_key_id: "testing".to_string(),
        secret_access_key: "testing".to_string(),
    };
    let default_paging = AwsEc2Provider::connect(
        &config,
        &AwsOptions {
            static_credentials: Some(creds.clone()),
            ..AwsOptions::default()
        },
    )
    .await
    .expect("connect");
    let moto_paging = AwsEc2Provider::connect(
        &config,
        &AwsOptions {
            static_credentials: Some(creds),
            page_size: None,
            ..AwsOptions::default()
        },
    )
    .await
    .expect("connect");

    let n = sizes.moto_instances as usize;
    // Interleave the contenders run by run, so drift in moto's speed hits all alike.
    let (mut list_default, mut list_moto_pages, mut full, mut boto3) =
        (vec![], vec![], vec![], vec![]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/bench_boto3_inventory.py"
    );
    let python = venv_bin("python");
    // Warm-up: the first list call after launches is slower in moto.
    let _ = default_paging.list_instances("acme").await;
    for _ in 0..sizes.runs {
        let t0 = Instant::now();
        let (seen, err) = default_paging.list_instances("acme").await;
        list_default.push(t0.elapsed());
        assert!(err.is_none() && seen.len() == n, "{err:?} {}", seen.len());

        let t0 = Instant::now();
        let (seen, err) = moto_paging.list_instances("acme").await;
        list_moto_pages.push(t0.elapsed());
        assert!(err.is_none() && seen.len() == n, "{err:?} {}", seen.len());

        let t0 = Instant::now();
        let inventory = default_paging.inventory("acme").await;
        full.push(t0.elapsed());
        assert!(inventory.complete && inventory.instances.len() == n);

        let out = Command::new(&python)
            .args([script, &endpoint, "acme", "1"])
            .output()
            .expect("run the boto3 baseline");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("baseline prints JSON");
        assert_eq!(report["instances"].as_u64(), Some(n as u64), "{report}");
        let baseline_ms = report["median_ms"].as_f64().expect("median_ms");
        boto3.push(Duration::from_secs_f64(baseline_ms / 1e3));
    }
    let boto3 = ms(median(boto3));
    let rows = [
        (
            "phoenix list, MaxResults 1000 (default)",
            ms(median(list_default)),
        ),
        (
            "phoenix list, no MaxResults (moto pages of 100, like boto3)",
            ms(median(list_moto_pages)),
        ),
        (
            "phoenix full inventory (list + DescribeInstanceStatus health)",
            ms(median(full)),
        ),
    ];
    println!(
        "moto inventory: {n} instances in {} reservations, {} runs",
        n / 5,
        sizes.runs
    );
    println!("  boto3 paginator (baseline): {boto3:.0} ms");
    for (name, t) in rows {
        println!("  {name}: {t:.0} ms (ratio {:.2})", t / boto3);
    }
}

/// Inventory on the scale endpoint against the floor its buckets and latency set.
async fn bench_scale(sizes: &Sizes) {
    use phoenix_testkit::scale_ec2::{Buckets, Latency, ScaleEc2};
    let latency = Latency {
        per_call: sizes.scale_latency,
        per_instance: Duration::ZERO,
    };
    let buckets = Buckets::ec2_defaults();
    let endpoint = ScaleEc2::start(latency, buckets);
    let per_group = 100;
    for g in 0..sizes.scale_instances / per_group {
        let tags = [
            (tags::OWNER, "scale"),
            (tags::GROUP, &format!("g-{g:05}")),
            (tags::SPEC_HASH, "v1:sha256:0"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
        endpoint.add_instances(per_group, "ami-12345678", Some("subnet-0a"), &tags);
    }
    let config = AwsEc2Config {
        name: "aws".into(),
        region: Some("us-east-1".into()),
        endpoint_url: Some(endpoint.endpoint_url()),
        profile: None,
        run_instances_per_second: 2.0,
        describe_per_second: 20.0,
        mutate_per_second: 5.0,
        max_attempts: 8,
    };
    let options = AwsOptions {
        static_credentials: Some(StaticCredentials {
            access_key_id: "testing".into(),
            secret_access_key: "testing".into(),
        }),
        ..AwsOptions::default()
    };
    let provider = AwsEc2Provider::connect(&config, &options)
        .await
        .expect("connect to the scale endpoint");
    let started = Instant::now();
    let inventory = provider.inventory("scale").await;
    let took = started.elapsed();
    let calls = endpoint.calls();
    let total: u64 = calls.values().sum();
    let describe = buckets.describe.expect("the describe bucket");
    let pages = sizes.scale_instances.div_ceil(1000) as f64;
    let floor = sizes.scale_latency.as_secs_f64()
        + (pages - describe.capacity).max(0.0) / describe.refill_per_sec;
    println!(
        "scale inventory: {} instances, complete {}, {:.1} s; floor {:.1} s (ratio {:.2}); calls {total} ({:.1} per 1,000 instances: {calls:?}), throttled {}",
        inventory.instances.len(),
        inventory.complete,
        took.as_secs_f64(),
        floor,
        took.as_secs_f64() / floor,
        total as f64 * 1000.0 / sizes.scale_instances as f64,
        endpoint.throttled(),
    );
    println!(
        "RESULT {}",
        serde_json::json!({
            "bench": "scale_inventory",
            "instances": sizes.scale_instances,
            "seen": inventory.instances.len(),
            "complete": inventory.complete,
            "latency_ms": sizes.scale_latency.as_millis() as u64,
            "seconds": took.as_secs_f64(),
            "floor_seconds": floor,
            "calls": total,
            "calls_per_1000": total as f64 * 1000.0 / sizes.scale_instances as f64,
            "throttled": endpoint.throttled(),
        })
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing. Either way run.
    let sizes = sizes();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(900), async {
            bench_sim(&sizes).await;
            bench_moto(&sizes).await;
            bench_scale(&sizes).await;
        })
        .await
        .expect("benchmarks finish within 15 minutes");
    });
}
