//! Synthetic snapshots of any size, shared by the benchmark and the fixture server
//! example (included with `#[path]`, so it is not a test binary of its own).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use phoenix_api::*;
use phoenix_core::drift::DriftKind;
use phoenix_core::model::{InstanceHealth, InstanceState};
use phoenix_core::{SpecHash, Text};

fn hash_of(n: u64) -> SpecHash {
    format!("v1:sha256:{n:064x}")
        .parse()
        .expect("64 hex digits make a valid hash")
}

/// A snapshot with `groups` groups of three instances; every tenth group drifted with a
/// `modified` finding and every hundredth progressing with a plan.
pub fn snapshot(groups: usize) -> Snapshot {
    Snapshot::new(parts(groups))
}

/// The parts of [`snapshot`], before `Snapshot::new`.
pub fn parts(groups: usize) -> SnapshotParts {
    let now = SystemTime::now();
    let commit = "3f1c0e7d9a8b6c5d4e3f2a1b0c9d8e7f6a5b4c3d".to_owned();
    // One commit shared by every history entry, as the daemon's history cache shares it.
    let history_commit = Text::from(commit.as_str());
    let mut plans = Vec::new();
    let groups = (0..groups)
        .map(|i| {
            let name = format!("group-{i:05}");
            let desired = hash_of(i as u64 * 2);
            let drifted = i % 10 == 3;
            let progressing = i % 100 == 7;
            let plan_id = format!("plan-{i:05}");
            if progressing {
                plans.push(Plan {
                    id: plan_id.clone(),
                    group: name.clone(),
                    kind: PlanKind::Rollout,
                    target_hash: Some(desired),
                    revision: Some(commit.clone()),
                    strategy: Some("rolling".into()),
                    state: if i % 200 == 7 {
                        PlanState::AwaitingApproval
                    } else {
                        PlanState::Running
                    },
                    requires_approval: i % 200 == 7,
                    created_at: now - Duration::from_secs(120),
                    updated_at: now - Duration::from_secs(30),
                    steps: vec![
                        PlanStep {
                            index: 0,
                            action: "launch".into(),
                            state: StepState::Succeeded,
                            count: Some(1),
                            instance_ids: vec![format!("i-{i:05}n")],
                            started_at: Some(now - Duration::from_secs(100)),
                            finished_at: Some(now - Duration::from_secs(90)),
                            message: None,
                        },
                        PlanStep {
                            index: 1,
                            action: "wait_healthy".into(),
                            state: StepState::Running,
                            count: None,
                            instance_ids: vec![format!("i-{i:05}n")],
                            started_at: Some(now - Duration::from_secs(90)),
                            finished_at: None,
                            message: None,
                        },
                        PlanStep {
                            index: 2,
                            action: "terminate".into(),
                            state: StepState::Pending,
                            count: None,
                            instance_ids: vec![format!("i-{i:05}a")],
                            started_at: None,
                            finished_at: None,
                            message: None,
                        },
                    ],
                });
            }
            // One hash text shared by the group's instances and observed hash, as the
            // daemon shares the instances' tag.
            let desired_text = HashText::from(desired);
            let instances = ["a", "b", "c"]
                .iter()
                .map(|suffix| GroupInstance {
                    id: format!("i-{i:05}{suffix}").into(),
                    spec_hash: Some(desired_text.clone()),
                    state: InstanceState::Running,
                    health: InstanceHealth::Healthy,
                    commit: Some(commit.as_str().into()),
                    traffic: None,
                })
                .collect();
            Group {
                summary: GroupSummary {
                    name: name.into(),
                    desired_hash: Some(desired_text.clone()),
                    replicas: 3,
                    sync: if progressing {
                        SyncState::Progressing
                    } else if drifted {
                        SyncState::Drifted
                    } else {
                        SyncState::InSync
                    },
                    health: if drifted {
                        GroupHealth::Degraded
                    } else {
                        GroupHealth::Healthy
                    },
                    instances,
                    observed_hashes: Box::new([ObservedHash {
                        spec_hash: desired_text,
                        count: 3,
                    }]),
                    drift: if drifted {
                        Box::new([DriftFinding {
                            kind: DriftKind::Modified,
                            instance_id: Some(format!("i-{i:05}a")),
                            field: Some("instanceType".into()),
                            expected: Some("t3.micro".into()),
                            observed: Some("t3.large".into()),
                            since: now - Duration::from_secs(300),
                        }])
                    } else {
                        Box::default()
                    },
                    target_groups: None,
                    operation: progressing.then(|| {
                        Box::new(Operation {
                            plan_id,
                            phase: PlanState::Running,
                        })
                    }),
                },
                history: Arc::new([HistoryEntry {
                    spec_hash: desired,
                    commit: Some(history_commit.clone()),
                    first_seen: (now - Duration::from_secs(86_400)).into(),
                    last_seen: now.into(),
                    outcome: HistoryOutcome::Succeeded,
                }]),
            }
        })
        .map(Arc::new)
        .collect();
    SnapshotParts {
        ready: true,
        revision: Revision {
            id: Some(commit.clone()),
            accepted_at: Some(now - Duration::from_secs(600)),
            error: None,
            signature: None,
        },
        inventory: vec![ProviderInventory {
            provider: "sim".into(),
            complete: true,
            collected_at: Some(now - Duration::from_secs(4)),
            instances: 0,
        }],
        groups,
        plans,
        alerts: AlertCounts::default(),
        windows: Default::default(),
    }
}
