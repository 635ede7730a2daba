//! The `sim` provider: a built-in simulated cloud persisted in the state directory, so
//! the quickstart, chaos tests and large benchmarks run without any cloud.
//!
//! Behaviour:
//! - Launched instances are `pending` for `launch_latency`, then `running`.
//! - A launch fails (as [`ProviderError::Capacity`], nothing created) with probability
//!   `launch_failure_rate`.
//! - Running instances are healthy, except those whose image is in `unhealthy_images`,
//!   which never become healthy. Stopped or stopping instances are unhealthy.
//! - Terminated instances disappear at once.
//! - Images for `policy.images`: the sim describes the images registered in its config
//!   (`images:` entries with id, owner, name, tags, created, deprecated_at) or at run
//!   time ([`SimProvider::register_image`]); any other id is unknown (`NotFound`).
//!   Launching does not require a registered image when no policy is configured.
//! - Out-of-band changes for tests ([`SimProvider::modify`]) are persisted like
//!   everything else, and other processes opening the same directory see them.
//! - Load balancer target groups (`target_groups:` in its config, design section 11):
//!   registration delay (`initial`, then `healthy`), draining for the deregistration
//!   delay (then gone), targets that never get healthy (`unhealthy_images` per target
//!   group), and a record of every terminate of a registered or draining instance
//!   ([`SimProvider::traffic_violations`]); see `targets`.
//!
//! The knobs are settable at run time ([`SimProvider::set_launch_latency`], ...); they
//! are not persisted (they come from the config at each start).

mod store;
mod targets;
mod world;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use phoenix_core::config::{SimConfig, SimTargetGroup};
use phoenix_core::model::{Instance, InstanceHealth, Inventory};
use phoenix_core::policy::{ImageInfo, ImageLookup};
use phoenix_core::traffic::Target;
use rand::Rng;

pub use targets::TrafficViolation;
pub use world::SimChange;

use crate::{LaunchRequest, Provider, ProviderError, TargetGroupInfo, TargetRef};
use store::{Store, StoreError};
use world::{Record, World, format_id, millis, parse_id};

/// The sim's run-time knobs.
#[derive(Debug, Clone, PartialEq)]
pub struct SimSettings {
    /// Time from launch until an instance is running.
    pub launch_latency: Duration,
    /// Fraction of launch calls that fail, 0.0 to 1.0.
    pub launch_failure_rate: f64,
    /// Instances of these images never become healthy.
    pub unhealthy_images: BTreeSet<String>,
    /// Registered images by id, as `describe_images` answers them.
    pub images: BTreeMap<String, ImageInfo>,
    /// Load balancer target groups by name.
    pub target_groups: BTreeMap<String, SimTargetGroup>,
}

impl From<&SimConfig> for SimSettings {
    fn from(config: &SimConfig) -> Self {
        Self {
            launch_latency: config.launch_latency,
            launch_failure_rate: config.launch_failure_rate,
            unhealthy_images: config.unhealthy_images.iter().cloned().collect(),
            images: config
                .images
                .iter()
                .map(|image| (image.id.clone(), image.clone()))
                .collect(),
            target_groups: config
                .target_groups
                .iter()
                .map(|tg| (tg.name.clone(), tg.clone()))
                .collect(),
        }
    }
}

#[derive(Debug)]
struct Inner {
    name: String,
    dir: PathBuf,
    settings: Mutex<SimSettings>,
    state: Mutex<(Store, World)>,
}

/// The simulated cloud. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct SimProvider {
    inner: Arc<Inner>,
}

impl SimProvider {
    /// Open (or create) the sim named in `config` under `<state_dir>/sim/<name>/`.
    pub async fn open(config: &SimConfig, state_dir: &Path) -> Result<Self, ProviderError> {
        Self::open_dir(config, state_dir.join("sim").join(&config.name)).await
    }

    /// Open (or create) a sim whose files live exactly in `dir`.
    pub async fn open_dir(config: &SimConfig, dir: PathBuf) -> Result<Self, ProviderError> {
        let settings = SimSettings::from(config);
        check_rate(&config.name, settings.launch_failure_rate)?;
        let name = config.name.clone();
        let open_dir = dir.clone();
        let (store, world) = tokio::task::spawn_blocking(move || Store::open(&open_dir))
            .await
            .expect("sim open task does not panic")
            .map_err(|e| store_error(&name, e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                name: config.name.clone(),
                dir,
                settings: Mutex::new(settings),
                state: Mutex::new((store, world)),
            }),
        })
    }

    /// The folder holding this sim's files.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The current knobs.
    pub fn settings(&self) -> SimSettings {
        self.inner
            .settings
            .lock()
            .expect("settings lock is never poisoned")
            .clone()
    }

    /// Change the launch latency (affects later launches).
    pub fn set_launch_latency(&self, latency: Duration) {
        self.inner
            .settings
            .lock()
            .expect("settings lock is never poisoned")
            .launch_latency = latency;
    }

    /// Change the launch failure rate (0.0 to 1.0).
    pub fn set_launch_failure_rate(&self, rate: f64) -> Result<(), ProviderError> {
        check_rate(&self.inner.name, rate)?;
        self.inner
            .settings
            .lock()
            .expect("settings lock is never poisoned")
            .launch_failure_rate = rate;
        Ok(())
    }

    /// Register (or replace) an image the sim describes for `policy.images`.
    pub fn register_image(&self, image: ImageInfo) {
        self.inner
            .settings
            .lock()
            .expect("settings lock is never poisoned")
            .images
            .insert(image.id.clone(), image);
    }

    /// Add (or replace) a target group, e.g. to change its delays.
    pub fn set_target_group(&self, target_group: SimTargetGroup) {
        self.inner
            .settings
            .lock()
            .expect("settings lock is never poisoned")
            .target_groups
            .insert(target_group.name.clone(), target_group);
    }

    /// Every terminate of an instance that was registered or draining in a target
    /// group, oldest first (Phoenix must never cause one).
    pub async fn traffic_violations(&self) -> Result<Vec<TrafficViolation>, ProviderError> {
        self.with_world(|this, _, _| Ok(this.load_targets()?.violations))
            .await
    }

    fn target_group(
        &self,
        operation: &'static str,
        name: &str,
    ) -> Result<SimTargetGroup, ProviderError> {
        self.settings()
            .target_groups
            .get(name)
            .cloned()
            .ok_or_else(|| ProviderError::TargetGroupNotFound {
                provider: self.inner.name.clone(),
                operation,
                target_group: name.to_string(),
            })
    }

    fn load_targets(&self) -> Result<targets::Targets, ProviderError> {
        targets::Targets::load(&self.inner.dir).map_err(|source| self.targets_error(source))
    }

    fn save_targets(&self, t: &targets::Targets) -> Result<(), ProviderError> {
        t.save(&self.inner.dir)
            .map_err(|source| self.targets_error(source))
    }

    fn targets_error(&self, source: std::io::Error) -> ProviderError {
        ProviderError::Storage {
            provider: self.inner.name.clone(),
            path: self.inner.dir.join(targets::FILE),
            source,
        }
    }

    /// Replace the set of images whose instances never become healthy.
    pub fn set_unhealthy_images<I: IntoIterator<Item = String>>(&self, images: I) {
        self.inner
            .settings
            .lock()
            .expect("settings lock is never poisoned")
            .unhealthy_images = images.into_iter().collect();
    }

    /// Make an out-of-band change to one instance, as someone with console access might
    /// (change its type, stop it, retag it...). Persisted.
    pub async fn modify(&self, id: &str, change: SimChange) -> Result<(), ProviderError> {
        let numeric =
            parse_id(id).ok_or_else(|| self.not_found("ModifyInstance", &[id.to_string()]))?;
        let id = id.to_string();
        self.with_world(move |this, store, world| {
            if !world.contains(numeric) {
                return Err(this.not_found("ModifyInstance", &[id]));
            }
            let record = Record::Modify {
                id: numeric,
                change,
            };
            world.apply(&record);
            this.persist(store, world, &[record])
        })
        .await
    }

    /// Create many instances in one call, as if each request had been launched by the
    /// executor: same records, same tags (every Phoenix tag at creation), but one lock,
    /// one log append and one fsync for all of them. For tools and benchmarks that seed
    /// a large fleet (e.g. 300,000 instances in 100,000 groups); unlike
    /// [`Provider::launch`] it neither looks up launch tokens nor injects failures, so
    /// call it on a sim that holds none of these tokens yet. Returns how many instances
    /// were created.
    pub async fn seed(&self, requests: Vec<LaunchRequest>) -> Result<u64, ProviderError> {
        let latency = self.settings().launch_latency;
        self.with_world(move |this, store, world| {
            let now = millis(SystemTime::now());
            let latency = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
            let mut records = Vec::with_capacity(requests.len());
            let mut created = 0u64;
            for request in &requests {
                if request.count == 0 {
                    continue;
                }
                let record = launch_record(world, request, request.count, 0, now, latency);
                world.apply(&record);
                created += u64::from(request.count);
                records.push(record);
            }
            this.persist(store, world, &records)?;
            Ok(created)
        })
        .await
    }

    /// How many live instances the sim holds, of every owner.
    pub async fn len(&self) -> Result<usize, ProviderError> {
        self.with_world(|_, _, world| Ok(world.len())).await
    }

    /// Whether the sim holds no live instance.
    pub async fn is_empty(&self) -> Result<bool, ProviderError> {
        Ok(self.len().await? == 0)
    }

    fn not_found(&self, operation: &'static str, ids: &[String]) -> ProviderError {
        ProviderError::NotFound {
            provider: self.inner.name.clone(),
            operation,
            ids: ids.to_vec(),
        }
    }

    fn persist(
        &self,
        store: &mut Store,
        world: &mut World,
        records: &[Record],
    ) -> Result<(), ProviderError> {
        store
            .append(records)
            .map_err(|e| store_error(&self.inner.name, e))?;
        if store.wants_compaction() {
            store
                .compact(world)
                .map_err(|e| store_error(&self.inner.name, e))?;
        }
        Ok(())
    }

    /// Run `f` on a blocking thread with the world locked (in-process and across
    /// processes) and caught up with the files.
    async fn with_world<T, F>(&self, f: F) -> Result<T, ProviderError>
    where
        T: Send + 'static,
        F: FnOnce(&SimProvider, &mut Store, &mut World) -> Result<T, ProviderError>
            + Send
            + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut state = this
                .inner
                .state
                .lock()
                .expect("sim state lock is never poisoned");
            let (store, world) = &mut *state;
            let _locked = store
                .lock_and_sync(world)
                .map_err(|e| store_error(&this.inner.name, e))?;
            f(&this, store, world)
        })
        .await
        .expect("sim task does not panic")
    }

    fn views(
        &self,
        world: &World,
        owner: &str,
        token: Option<&str>,
        with_health: bool,
    ) -> Vec<Instance> {
        let now = millis(SystemTime::now());
        let unhealthy: Vec<u32> = if with_health {
            let settings = self.settings();
            settings
                .unhealthy_images
                .iter()
                .filter_map(|image| world.lookup(image))
                .collect()
        } else {
            Vec::new()
        };
        // Exact capacity, one buffer: a listing can hold a few hundred thousand
        // instances, and views allocate nothing else (their strings are the world's).
        let selected = world.select(owner, token);
        let mut out = Vec::with_capacity(selected.clone().count());
        out.extend(selected.map(|entry| {
            let mut instance = world.view(entry, now, &unhealthy);
            if !with_health {
                instance.health = InstanceHealth::Unknown;
            }
            instance
        }));
        out
    }
}

fn check_rate(provider: &str, rate: f64) -> Result<(), ProviderError> {
    if (0.0..=1.0).contains(&rate) {
        Ok(())
    } else {
        Err(ProviderError::Config {
            provider: provider.to_string(),
            reason: format!("launch_failure_rate must be between 0 and 1, got {rate}"),
        })
    }
}

fn store_error(provider: &str, err: StoreError) -> ProviderError {
    match err {
        StoreError::Io(path, source) => ProviderError::Storage {
            provider: provider.to_string(),
            path,
            source,
        },
        StoreError::Corrupt(path, what) => ProviderError::Corrupt {
            provider: provider.to_string(),
            path,
            what,
        },
    }
}

#[async_trait]
impl Provider for SimProvider {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn type_name(&self) -> &'static str {
        "sim"
    }

    async fn inventory(&self, owner: &str) -> Inventory {
        let mut inventory = crate::inventory_start(&self.inner.name);
        let owner = owner.to_string();
        match self
            .with_world(move |this, _, world| Ok(this.views(world, &owner, None, true)))
            .await
        {
            Ok(instances) => inventory.instances = instances,
            Err(err) => {
                inventory.complete = false;
                inventory.error = Some(err.to_string());
            }
        }
        inventory
    }

    async fn launch(&self, request: &LaunchRequest) -> Result<Vec<Instance>, ProviderError> {
        let settings = self.settings();
        let request = request.clone();
        self.with_world(move |this, store, world| {
            let existing = world
                .select(&request.owner, Some(&request.launch_token))
                .count();
            let missing = request
                .count
                .saturating_sub(u32::try_from(existing).unwrap_or(u32::MAX));
            if missing > 0 {
                if rand::rng().random::<f64>() < settings.launch_failure_rate {
                    return Err(ProviderError::Capacity {
                        provider: this.inner.name.clone(),
                        operation: "RunInstances",
                        message: "simulated launch failure (launch_failure_rate)".to_string(),
                    });
                }
                let now = millis(SystemTime::now());
                let latency =
                    u64::try_from(settings.launch_latency.as_millis()).unwrap_or(u64::MAX);
                let offset = u32::try_from(existing).unwrap_or(0);
                let record = launch_record(world, &request, missing, offset, now, latency);
                world.apply(&record);
                this.persist(store, world, &[record])?;
            }
            Ok(this.views(world, &request.owner, Some(&request.launch_token), false))
        })
        .await
    }

    async fn terminate(&self, ids: &[String]) -> Result<(), ProviderError> {
        let ids = ids.to_vec();
        self.with_world(move |this, store, world| {
            let mut numeric = Vec::with_capacity(ids.len());
            let mut unknown = Vec::new();
            for id in &ids {
                match parse_id(id) {
                    Some(n) => numeric.push(n),
                    None => unknown.push(id.clone()),
                }
            }
            if !unknown.is_empty() {
                return Err(this.not_found("TerminateInstances", &unknown));
            }
            // Ids the sim issued but that are gone were terminated before: not an error.
            numeric.retain(|n| world.contains(*n) || *n >= world.next_id);
            if let Some(never) = numeric.iter().find(|n| **n >= world.next_id) {
                return Err(this.not_found("TerminateInstances", &[format_id(*never)]));
            }
            if numeric.is_empty() {
                return Ok(());
            }
            let mut targets = this.load_targets()?;
            let live: Vec<String> = numeric.iter().map(|n| format_id(*n)).collect();
            let groups = this.settings().target_groups;
            if targets.terminated(&groups, world, &live, millis(SystemTime::now())) {
                this.save_targets(&targets)?;
            }
            let record = Record::Terminate { ids: numeric };
            world.apply(&record);
            this.persist(store, world, &[record])
        })
        .await
    }

    async fn health(
        &self,
        ids: &[String],
    ) -> Result<BTreeMap<String, InstanceHealth>, ProviderError> {
        let ids = ids.to_vec();
        let unhealthy_images = self.settings().unhealthy_images;
        self.with_world(move |_, _, world| {
            let now = millis(SystemTime::now());
            let unhealthy: Vec<u32> = unhealthy_images
                .iter()
                .filter_map(|i| world.lookup(i))
                .collect();
            let mut out = BTreeMap::new();
            for id in ids {
                let health = parse_id(&id)
                    .and_then(|n| world.get(n))
                    .map(|entry| {
                        let state = World::state(&entry.slot, now);
                        World::health(&entry.slot, state, &unhealthy)
                    })
                    .unwrap_or(InstanceHealth::Unknown);
                out.insert(id, health);
            }
            Ok(out)
        })
        .await
    }

    async fn find_by_launch_token(
        &self,
        owner: &str,
        token: &str,
    ) -> Result<Vec<Instance>, ProviderError> {
        let (owner, token) = (owner.to_string(), token.to_string());
        self.with_world(move |this, _, world| Ok(this.views(world, &owner, Some(&token), false)))
            .await
    }

    async fn register_targets(
        &self,
        target_group: &str,
        targets: &[TargetRef],
    ) -> Result<(), ProviderError> {
        let tg = self.target_group("RegisterTargets", target_group)?;
        let wanted: Vec<(String, u16)> = targets
            .iter()
            .map(|t| (t.id.clone(), t.port.unwrap_or(tg.port)))
            .collect();
        self.with_world(move |this, _, world| {
            let unknown: Vec<String> = wanted
                .iter()
                .filter(|(id, _)| parse_id(id).is_none_or(|n| !world.contains(n)))
                .map(|(id, _)| id.clone())
                .collect();
            if !unknown.is_empty() {
                return Err(ProviderError::Client {
                    provider: this.inner.name.clone(),
                    operation: "RegisterTargets",
                    code: "InvalidTarget".to_string(),
                    message: format!("no running instance {}", unknown.join(", ")),
                });
            }
            let mut t = this.load_targets()?;
            t.register(&tg, &wanted, millis(SystemTime::now()));
            this.save_targets(&t)
        })
        .await
    }

    async fn deregister_targets(
        &self,
        target_group: &str,
        targets: &[TargetRef],
    ) -> Result<(), ProviderError> {
        let tg = self.target_group("DeregisterTargets", target_group)?;
        let ids: Vec<String> = targets.iter().map(|t| t.id.clone()).collect();
        self.with_world(move |this, _, _| {
            let mut t = this.load_targets()?;
            t.deregister(&tg, &ids, millis(SystemTime::now()));
            this.save_targets(&t)
        })
        .await
    }

    async fn target_health(&self, target_group: &str) -> Result<Vec<Target>, ProviderError> {
        let tg = self.target_group("DescribeTargetHealth", target_group)?;
        self.with_world(move |this, _, world| {
            let t = this.load_targets()?;
            Ok(t.health(&tg, world, millis(SystemTime::now())))
        })
        .await
    }

    async fn target_group_info(
        &self,
        target_group: &str,
    ) -> Result<TargetGroupInfo, ProviderError> {
        let tg = self.target_group("DescribeTargetGroupAttributes", target_group)?;
        Ok(TargetGroupInfo {
            deregistration_delay: tg.deregistration_delay,
        })
    }

    async fn describe_images(
        &self,
        ids: &[String],
    ) -> Result<BTreeMap<String, ImageLookup>, ProviderError> {
        let settings = self.settings();
        Ok(ids
            .iter()
            .map(|id| {
                let lookup = match settings.images.get(id) {
                    Some(image) => ImageLookup::Found(image.clone()),
                    None => ImageLookup::NotFound,
                };
                (id.clone(), lookup)
            })
            .collect())
    }
}

/// The log record of launching `count` instances for `request` at `now` (ms), ready
/// `latency` ms later; `subnet_offset` continues the round-robin over the template's
/// subnets after instances the same token already has.
fn launch_record(
    world: &World,
    request: &LaunchRequest,
    count: u32,
    subnet_offset: u32,
    now: u64,
    latency: u64,
) -> Record {
    let template = &request.template;
    Record::Launch {
        first_id: world.next_id.max(1),
        count,
        launched_ms: now,
        ready_ms: now.saturating_add(latency),
        image: template.image.to_string(),
        instance_type: template.instance_type.to_string(),
        subnets: template.subnet_ids.iter().map(|s| s.to_string()).collect(),
        subnet_offset,
        security_groups: template
            .security_group_ids
            .iter()
            .map(|s| s.to_string())
            .collect(),
        tags: request.tags(),
    }
}
