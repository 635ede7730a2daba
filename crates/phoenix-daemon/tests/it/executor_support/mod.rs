//! Shared fixtures of the executor tests: desired groups from YAML, a sim provider and a
//! real store in a temp dir, a provider wrapper that checks the rollout invariants at
//! every launch and terminate call (and injects provider errors, and counts inventory
//! reads and launch-token lookups), and a reconcile pass
//! (inventory -> plan -> submit -> advance) with a virtual clock.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use phoenix_cloud::sim::SimProvider;
use phoenix_cloud::{LaunchRequest, Provider, ProviderError, TargetGroupInfo, TargetRef};
use phoenix_core::config::{ReconcileConfig, SimConfig};
use phoenix_core::model::{Instance, InstanceHealth, Inventory};
use phoenix_core::parse_group;
use phoenix_core::plan::{FailedGeneration, PlanDocument, PlanInput, PlanMemory, plan};
use phoenix_core::spec::ParsedGroup;
use phoenix_core::traffic::{Target, TargetState};
use phoenix_daemon::executor::{Executor, ExecutorOptions, Transition};
use phoenix_store::{Store, StoreOptions};

pub const OWNER: &str = "acme";
pub const PROVIDER: &str = "sim";

/// Every await in these tests is bounded by this.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Knobs of a test group.
#[derive(Debug, Clone)]
pub struct G {
    pub name: &'static str,
    pub replicas: u32,
    pub image: &'static str,
    pub strategy: &'static str,
    pub surge: u32,
    pub unavailable: u32,
    pub bake: &'static str,
    pub auto_rollback: bool,
    pub check: &'static str,
    pub grace: &'static str,
    pub deadline: &'static str,
    pub approval: &'static str,
    /// The target group of `spec.traffic`, when the group has one.
    pub traffic: Option<&'static str>,
}

fn traffic_yaml(spec: String, traffic: &str) -> String {
    format!("{spec}{traffic}")
}

impl Default for G {
    fn default() -> Self {
        Self {
            name: "web",
            replicas: 3,
            image: "ami-old",
            strategy: "rolling",
            surge: 1,
            unavailable: 0,
            bake: "0s",
            auto_rollback: true,
            check: "provider",
            grace: "0s",
            deadline: "60s",
            approval: "auto",
            traffic: None,
        }
    }
}

impl G {
    pub fn yaml(&self) -> String {
        let traffic = match self.traffic {
            Some(tg) => format!("  traffic: {{targetGroups: [{tg}]}}\n"),
            None => String::new(),
        };
        traffic_yaml(
            format!(
                "apiVersion: phoenix/v1\nkind: InstanceGroup\nmetadata:\n  name: {name}\nspec:\n  provider: {PROVIDER}\n  replicas: {replicas}\n  template:\n    image: {image}\n    instanceType: t3.micro\n    subnetIds: [subnet-a]\n    securityGroupIds: [sg-1]\n  rollout:\n    strategy: {strategy}\n    maxSurge: {surge}\n    maxUnavailable: {unavailable}\n    bake: {bake}\n    autoRollback: {rb}\n  health:\n    check: {check}\n    grace: {grace}\n    deadline: {deadline}\n  approval: {approval}\n",
                name = self.name,
                replicas = self.replicas,
                image = self.image,
                strategy = self.strategy,
                surge = self.surge,
                unavailable = self.unavailable,
                bake = self.bake,
                rb = self.auto_rollback,
                check = self.check,
                grace = self.grace,
                deadline = self.deadline,
                approval = self.approval,
            ),
            &traffic,
        )
    }

    pub fn parsed(&self) -> ParsedGroup {
        parse_group(&self.yaml()).expect("test group is valid")
    }

    pub fn floor(&self) -> u32 {
        self.replicas - self.unavailable.min(self.replicas - 1)
    }
}

/// Invariant checks and injected faults, around a real provider.
#[derive(Debug)]
pub struct Checked {
    pub inner: Arc<dyn Provider>,
    /// group name -> (replicas, healthy floor, max live instances)
    pub limits: Mutex<BTreeMap<String, (u32, u32, u32)>>,
    pub violations: Mutex<Vec<String>>,
    /// The next N terminate calls fail with a server error.
    pub fail_terminates: AtomicU32,
    /// The next N health calls fail with a server error.
    pub fail_health: AtomicU32,
    /// Every launch token ever used, with how many instances carry it at most.
    pub launches: Mutex<BTreeMap<String, u32>>,
    pub terminate_calls: AtomicU32,
    /// Calls of `inventory` made by the executor (the wrapper's own checks not counted).
    pub inventory_calls: AtomicU32,
    /// Calls of `find_by_launch_token`.
    pub token_lookups: AtomicU32,
    /// While set, `inventory` answers incomplete (a list call failed).
    pub incomplete_inventory: AtomicBool,
    /// Traffic: group name -> its target group, for the traffic invariants.
    pub traffic: Mutex<BTreeMap<String, String>>,
    /// Traffic calls in order: (call, target group or "", ids).
    pub traffic_log: Mutex<Vec<(&'static str, String, Vec<String>)>>,
    /// DescribeTargetHealth calls.
    pub target_health_calls: AtomicU32,
}

impl Checked {
    pub fn new(inner: Arc<dyn Provider>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            limits: Mutex::new(BTreeMap::new()),
            violations: Mutex::new(Vec::new()),
            fail_terminates: AtomicU32::new(0),
            fail_health: AtomicU32::new(0),
            launches: Mutex::new(BTreeMap::new()),
            terminate_calls: AtomicU32::new(0),
            inventory_calls: AtomicU32::new(0),
            token_lookups: AtomicU32::new(0),
            incomplete_inventory: AtomicBool::new(false),
            traffic: Mutex::new(BTreeMap::new()),
            traffic_log: Mutex::new(Vec::new()),
            target_health_calls: AtomicU32::new(0),
        })
    }

    /// The group `g` serves target group `tg`: terminates and deregistrations are
    /// checked against it.
    pub fn limit_traffic(&self, g: &G, tg: &str) {
        self.traffic
            .lock()
            .expect("test lock")
            .insert(g.name.to_string(), tg.to_string());
    }

    /// The group's members in service in its target group now, by id.
    pub async fn in_service(&self, group: &str) -> BTreeSet<String> {
        let Some(tg) = self.traffic.lock().expect("test lock").get(group).cloned() else {
            return BTreeSet::new();
        };
        let inv = self.inner.inventory(OWNER).await;
        let members: BTreeSet<String> = inv
            .instances
            .iter()
            .filter(|i| i.group() == Some(group))
            .map(|i| i.id.to_string())
            .collect();
        self.inner
            .target_health(&tg)
            .await
            .expect("target health in a check")
            .into_iter()
            .filter(|t| t.state == TargetState::Healthy && members.contains(t.id.as_str()))
            .map(|t| t.id.to_string())
            .collect()
    }

    fn log(&self, call: &'static str, tg: &str, ids: Vec<String>) {
        self.traffic_log
            .lock()
            .expect("test lock")
            .push((call, tg.to_string(), ids));
    }

    /// Limits for a group: never fewer than `floor` healthy (when that many were healthy
    /// before), never more than `max_live` live instances.
    pub fn limit(&self, g: &G) {
        let surge = g.surge.max(if g.unavailable == 0 { 1 } else { 0 });
        let max_live = if g.strategy == "blue-green" {
            g.replicas * 2
        } else {
            g.replicas + surge
        };
        self.limits
            .lock()
            .expect("test lock")
            .insert(g.name.to_string(), (g.replicas, g.floor(), max_live));
    }

    pub fn violations(&self) -> Vec<String> {
        self.violations.lock().expect("test lock").clone()
    }

    fn violate(&self, what: String) {
        self.violations.lock().expect("test lock").push(what);
    }

    fn err(&self, operation: &'static str) -> ProviderError {
        ProviderError::Server {
            provider: PROVIDER.to_string(),
            operation,
            status: 500,
            code: "InternalError".to_string(),
            message: "injected by the test".to_string(),
            attempts: 1,
        }
    }
}

fn take(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

#[async_trait]
impl Provider for Checked {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn type_name(&self) -> &'static str {
        self.inner.type_name()
    }
    async fn inventory(&self, owner: &str) -> Inventory {
        self.inventory_calls.fetch_add(1, Ordering::SeqCst);
        let mut inventory = self.inner.inventory(owner).await;
        if self.incomplete_inventory.load(Ordering::SeqCst) {
            inventory.complete = false;
        }
        inventory
    }
    async fn launch(&self, request: &LaunchRequest) -> Result<Vec<Instance>, ProviderError> {
        let before = self.inner.inventory(OWNER).await;
        let group = request.group.as_str().to_string();
        let live = before
            .instances
            .iter()
            .filter(|i| i.group() == Some(&group))
            .count() as u32;
        let already = before
            .instances
            .iter()
            .filter(|i| i.tag("phoenix:launch-token") == Some(&request.launch_token))
            .count() as u32;
        let adding = request.count.saturating_sub(already);
        if let Some((_, _, max_live)) = self.limits.lock().expect("test lock").get(&group).copied()
            && live + adding > max_live
        {
            self.violate(format!(
                "launch of {adding} in {group} would make {} live, above {max_live}",
                live + adding
            ));
        }
        let out = self.inner.launch(request).await?;
        let mut launches = self.launches.lock().expect("test lock");
        let n = launches.entry(request.launch_token.clone()).or_insert(0);
        *n = (*n).max(out.len() as u32);
        Ok(out)
    }
    async fn terminate(&self, ids: &[String]) -> Result<(), ProviderError> {
        self.terminate_calls.fetch_add(1, Ordering::SeqCst);
        if take(&self.fail_terminates) {
            return Err(self.err("TerminateInstances"));
        }
        let traffic = self.traffic.lock().expect("test lock").clone();
        for tg in traffic.values() {
            for t in self
                .inner
                .target_health(tg)
                .await
                .expect("target health in a check")
            {
                if ids.iter().any(|id| id == t.id.as_str()) && t.state.is_attached() {
                    self.violate(format!("terminate of {} while {} in {tg}", t.id, t.state));
                }
            }
        }
        self.log("terminate", "", ids.to_vec());
        let before = self.inner.inventory(OWNER).await;
        let going: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
        let limits = self.limits.lock().expect("test lock").clone();
        for (group, (_, floor, _)) in limits {
            let members: Vec<&Instance> = before
                .instances
                .iter()
                .filter(|i| i.group() == Some(&group))
                .collect();
            let healthy_before = members
                .iter()
                .filter(|i| i.health == InstanceHealth::Healthy)
                .count() as u32;
            let healthy_after = members
                .iter()
                .filter(|i| i.health == InstanceHealth::Healthy && !going.contains(i.id.as_str()))
                .count() as u32;
            if healthy_after < floor.min(healthy_before) {
                self.violate(format!(
                    "terminating {ids:?} leaves {group} with {healthy_after} healthy (floor {floor}, before {healthy_before})"
                ));
            }
        }
        self.inner.terminate(ids).await
    }
    async fn health(
        &self,
        ids: &[String],
    ) -> Result<BTreeMap<String, InstanceHealth>, ProviderError> {
        if take(&self.fail_health) {
            return Err(self.err("DescribeInstanceStatus"));
        }
        self.inner.health(ids).await
    }
    async fn find_by_launch_token(
        &self,
        owner: &str,
        token: &str,
    ) -> Result<Vec<Instance>, ProviderError> {
        self.token_lookups.fetch_add(1, Ordering::SeqCst);
        self.inner.find_by_launch_token(owner, token).await
    }
    async fn register_targets(
        &self,
        target_group: &str,
        targets: &[TargetRef],
    ) -> Result<(), ProviderError> {
        self.log(
            "register",
            target_group,
            targets.iter().map(|t| t.id.clone()).collect(),
        );
        self.inner.register_targets(target_group, targets).await
    }
    async fn deregister_targets(
        &self,
        target_group: &str,
        targets: &[TargetRef],
    ) -> Result<(), ProviderError> {
        let going: BTreeSet<String> = targets.iter().map(|t| t.id.clone()).collect();
        let groups: Vec<String> = self
            .traffic
            .lock()
            .expect("test lock")
            .iter()
            .filter(|(_, tg)| tg.as_str() == target_group)
            .map(|(g, _)| g.clone())
            .collect();
        let limits = self.limits.lock().expect("test lock").clone();
        for group in groups {
            let before = self.in_service(&group).await;
            let after = before.iter().filter(|id| !going.contains(*id)).count() as u32;
            let floor = limits.get(&group).map_or(0, |l| l.1);
            if after < floor.min(before.len() as u32) {
                self.violate(format!(
                    "deregistering {going:?} leaves {group} with {after} in service (floor {floor}, before {})",
                    before.len()
                ));
            }
        }
        self.log("deregister", target_group, going.into_iter().collect());
        self.inner.deregister_targets(target_group, targets).await
    }
    async fn target_health(&self, target_group: &str) -> Result<Vec<Target>, ProviderError> {
        self.target_health_calls.fetch_add(1, Ordering::SeqCst);
        self.inner.target_health(target_group).await
    }
    async fn target_group_info(
        &self,
        target_group: &str,
    ) -> Result<TargetGroupInfo, ProviderError> {
        self.inner.target_group_info(target_group).await
    }
}

/// A sim, a store, an executor and a virtual clock in a temp dir.
pub struct World {
    pub dir: tempfile::TempDir,
    pub sim: SimProvider,
    pub checked: Arc<Checked>,
    pub store: Store,
    pub exec: Executor,
    pub now: SystemTime,
    pub memory: PlanMemory,
    pub transitions: Vec<Transition>,
    /// The `reconcile` settings the planner gets (`reconcile_config()` at first).
    pub config: ReconcileConfig,
}

pub fn sim_config(unhealthy: &[&str]) -> SimConfig {
    SimConfig {
        name: PROVIDER.to_string(),
        launch_latency: Duration::ZERO,
        launch_failure_rate: 0.0,
        unhealthy_images: unhealthy.iter().map(|s| s.to_string()).collect(),
        images: Vec::new(),
        target_groups: Vec::new(),
    }
}

pub fn reconcile_config() -> ReconcileConfig {
    ReconcileConfig {
        max_replacements: 10_000,
        max_replacement_fraction: 1.0,
        ..ReconcileConfig::default()
    }
}

pub fn options() -> ExecutorOptions {
    ExecutorOptions::default()
}

pub async fn bounded<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP_TIMEOUT, fut)
        .await
        .expect("the call finished within the test timeout")
}

impl World {
    pub async fn new(unhealthy: &[&str]) -> World {
        Self::with_config(sim_config(unhealthy)).await
    }

    /// A world whose sim has `config`.
    pub async fn with_config(config: SimConfig) -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let sim = bounded(SimProvider::open_dir(&config, dir.path().join("sim")))
            .await
            .expect("sim opens");
        let checked = Checked::new(Arc::new(sim.clone()));
        let store =
            Store::open(&dir.path().join("state"), StoreOptions::default()).expect("store opens");
        let exec = Self::executor(&checked);
        World {
            dir,
            sim,
            checked,
            store,
            exec,
            now: SystemTime::now(),
            memory: PlanMemory::default(),
            transitions: Vec::new(),
            config: reconcile_config(),
        }
    }

    pub fn executor(checked: &Arc<Checked>) -> Executor {
        let mut providers: BTreeMap<String, Arc<dyn Provider>> = BTreeMap::new();
        providers.insert(PROVIDER.to_string(), checked.clone());
        Executor::new(OWNER.to_string(), providers, options())
    }

    /// Launch `g.replicas` instances of `g` directly (the fleet before the change).
    pub async fn seed(&mut self, g: &G) {
        let parsed = g.parsed();
        let request = LaunchRequest {
            owner: OWNER.to_string(),
            group: parsed.group.name().clone(),
            template: parsed.group.spec.template.clone(),
            spec_hash: parsed.hash,
            commit: "c0".to_string(),
            plan_id: "seed".to_string(),
            launch_token: format!("seed-{}", g.name),
            count: g.replicas,
        };
        bounded(self.sim.launch(&request))
            .await
            .expect("seed launch");
    }

    pub async fn members(&self, group: &str) -> Vec<Instance> {
        let inv = bounded(self.sim.inventory(OWNER)).await;
        assert!(inv.complete, "sim inventory is complete");
        inv.instances
            .into_iter()
            .filter(|i| i.group() == Some(group))
            .collect()
    }

    pub fn failed(&self) -> Vec<FailedGeneration> {
        self.store
            .failed_hashes()
            .expect("read failed hashes")
            .into_iter()
            .map(|f| FailedGeneration {
                group: f.group.as_str().to_string(),
                hash: f.spec_hash,
                commit: f.commit,
            })
            .collect()
    }

    /// One planning pass and submit.
    pub async fn plan_and_submit(&mut self, groups: &[ParsedGroup], commit: &str) -> PlanDocument {
        let inv = bounded(self.sim.inventory(OWNER)).await;
        let failed = self.failed();
        let mut providers: BTreeMap<String, Arc<dyn Provider>> = BTreeMap::new();
        providers.insert(PROVIDER.to_string(), Arc::new(self.sim.clone()));
        let traffic = bounded(phoenix_daemon::traffic::target_health(
            groups.iter().map(|g| g.group.as_ref()),
            &providers,
        ))
        .await;
        let outcome = plan(&PlanInput {
            revision: commit,
            owner: OWNER,
            groups,
            inventories: &[inv],
            config: &self.config,
            memory: &self.memory,
            failed: &failed,
            images: &phoenix_core::policy::NO_POLICY,
            traffic: &traffic,
            now: self.now,
        })
        .expect("plan");
        self.memory = outcome.memory;
        let t = self
            .exec
            .submit(&mut self.store, &outcome.document, groups, commit, self.now)
            .expect("submit");
        self.transitions.extend(t);
        outcome.document
    }

    /// Advance once at the current virtual time; returns the wake-up.
    pub async fn advance(&mut self) -> Option<Duration> {
        let progress = bounded(self.exec.advance(&mut self.store, self.now))
            .await
            .expect("advance");
        self.transitions.extend(progress.transitions);
        progress.wake_after
    }

    /// Plan, submit and advance (moving the virtual clock by each wake-up) until the
    /// planner has nothing to do and no plan is active, or `passes` run out.
    pub async fn converge(&mut self, groups: &[ParsedGroup], commit: &str, passes: u32) -> bool {
        for _ in 0..passes {
            let doc = self.plan_and_submit(groups, commit).await;
            let wake = self.advance().await;
            let active = self
                .store
                .unfinished_plans()
                .expect("unfinished plans")
                .len();
            if !doc.changes && active == 0 && wake.is_none() {
                return true;
            }
            self.now += wake
                .unwrap_or(Duration::from_secs(1))
                .max(Duration::from_millis(10));
        }
        false
    }

    pub fn kinds(&self) -> Vec<&'static str> {
        self.transitions.iter().map(Transition::kind).collect()
    }
}

/// Write nothing; exists so the module is used from every test binary.
pub fn touch(_: &Path) {}
