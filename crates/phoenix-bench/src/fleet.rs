//! The benchmark fleet: N desired-state files (one group each, `replicas` instances) and
//! the matching in-sync fleet seeded into the sim's persisted state, tagged exactly as the
//! executor tags what it launches (owner, group, spec hash, commit, plan, launch token).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use phoenix_cloud::LaunchRequest;
use phoenix_cloud::sim::SimProvider;
use phoenix_core::config::SimConfig;
use phoenix_core::parse_group;
use phoenix_core::spec::ParsedGroup;

/// The owner the benchmark daemon runs as.
pub const OWNER: &str = "bench";
/// The sim provider's name in the benchmark config.
pub const PROVIDER: &str = "sim";

/// Name of group `i`.
pub fn group_name(i: usize) -> String {
    format!("g-{i:06}")
}

/// Text of group `i`'s file: a realistic spec (three subnets, a security group, a
/// rolling rollout, provider health).
pub fn spec_text(i: usize, replicas: u32) -> String {
    format!(
        "apiVersion: phoenix/v1\nkind: InstanceGroup\nmetadata:\n  name: {name}\n  labels: {{team: t{team}}}\nspec:\n  provider: {PROVIDER}\n  replicas: {replicas}\n  template:\n    image: ami-{i:017x}\n    instanceType: t3.micro\n    subnetIds: [subnet-a, subnet-b, subnet-c]\n    securityGroupIds: [sg-1]\n    tags: {{app: {name}}}\n  rollout: {{strategy: rolling, maxSurge: 1, maxUnavailable: 0}}\n  health: {{check: provider, grace: 0s, deadline: 2m}}\n",
        name = group_name(i),
        team = i % 17,
    )
}

/// The sim's config in the benchmark (zero launch latency: seeded instances are
/// running and healthy at once).
pub fn sim_config() -> SimConfig {
    SimConfig {
        name: PROVIDER.to_string(),
        launch_latency: std::time::Duration::ZERO,
        launch_failure_rate: 0.0,
        unhealthy_images: Vec::new(),
        images: Vec::new(),
        target_groups: Vec::new(),
    }
}

/// Write `groups` spec files into `dir` (created), spread over folders of 1,000 files.
/// Returns the paths.
pub fn write_specs(dir: &Path, groups: usize, replicas: u32) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::with_capacity(groups);
    for i in 0..groups {
        let folder = dir.join(format!("s{:03}", i / 1000));
        if i % 1000 == 0 {
            std::fs::create_dir_all(&folder)
                .with_context(|| format!("create {}", folder.display()))?;
        }
        let path = folder.join(format!("{}.yaml", group_name(i)));
        std::fs::write(&path, spec_text(i, replicas))
            .with_context(|| format!("write {}", path.display()))?;
        paths.push(path);
    }
    Ok(paths)
}

/// Parse every generated spec (the same function the daemon's loader uses).
pub fn parse_all(groups: usize, replicas: u32) -> Result<Vec<ParsedGroup>> {
    (0..groups)
        .map(|i| {
            parse_group(&spec_text(i, replicas))
                .map_err(|e| anyhow::anyhow!("generated spec {i} is invalid: {e}"))
        })
        .collect()
}

/// Seed the sim under `<state_dir>/sim/<PROVIDER>/` with `replicas` running instances
/// per group, carrying the group's current spec hash. Returns the number created.
pub async fn seed(state_dir: &Path, desired: &[ParsedGroup]) -> Result<u64> {
    let sim = SimProvider::open(&sim_config(), state_dir)
        .await
        .context("open the sim")?;
    let mut created = 0;
    // Chunks bound the memory of one call's records; each chunk is one fsynced append.
    for chunk in desired.chunks(20_000) {
        let requests = chunk
            .iter()
            .map(|g| {
                let name = g.group.metadata.name.clone();
                LaunchRequest {
                    owner: OWNER.to_string(),
                    launch_token: format!("seed/{name}/0"),
                    plan_id: format!("seed-{name}"),
                    group: name,
                    template: g.group.spec.template.clone(),
                    spec_hash: g.hash,
                    commit: "seed".to_string(),
                    count: g.group.spec.replicas.get(),
                }
            })
            .collect();
        created += sim.seed(requests).await.context("seed the sim")?;
    }
    Ok(created)
}
