//! What the executor knows of each provider's fleet during one [`super::Executor::advance`]
//! (or [`super::Executor::recover`]) call.
//!
//! The provider's inventory is read at most once per call, lazily, the first time a
//! step of that provider needs it (a terminate's healthy-floor check, a rollback, a
//! health gate with `check: http` or `none`), and indexed by instance id, by group and by
//! launch token, so each plan's lookups cost what its own instances cost, not the fleet.
//! What the executor itself does later in the same call is written into the view, so it
//! stays exact for the executor's own actions:
//!
//! - instances it launches (or finds by launch token) are added;
//! - instances it terminates are removed, and stay removed if the inventory is read
//!   only afterwards;
//! - health it observes (the provider's health call, probes) overrides the inventory's
//!   older health for those instances; instances of a terminate call that failed are
//!   marked `Unknown` (the call may have half-happened), so they never hold a floor up.
//!
//! An incomplete inventory stays incomplete for the whole call: a terminate waits.
//! The view lives for one call only; the next call reads the providers again.

use std::collections::{BTreeSet, HashMap, HashSet};

use phoenix_cloud::Provider;
use phoenix_core::model::Instance;
use phoenix_core::tags;

use super::health::Verdict;

/// Every provider's fleet as known within one executor call, keyed by provider name.
#[derive(Debug, Default)]
pub(crate) struct Fleets {
    by_provider: HashMap<String, Fleet>,
}

impl Fleets {
    /// The fleet of a provider (inventory not read yet if nothing needed it so far).
    pub fn of(&mut self, provider: &str) -> &mut Fleet {
        if !self.by_provider.contains_key(provider) {
            self.by_provider
                .insert(provider.to_string(), Fleet::default());
        }
        self.by_provider
            .get_mut(provider)
            .expect("the fleet was just inserted")
    }
}

/// One provider's fleet: the inventory read in this call (once) plus what the executor
/// did and observed since.
#[derive(Debug, Default)]
pub(crate) struct Fleet {
    /// Whether the inventory has been read in this call.
    loaded: bool,
    /// Whether that read was complete.
    complete: bool,
    /// Live instances by id.
    instances: HashMap<String, Instance>,
    /// Group name -> instance ids, sorted (deterministic terminate order).
    by_group: HashMap<String, BTreeSet<String>>,
    /// Launch token -> instance ids.
    by_token: HashMap<String, BTreeSet<String>>,
    /// Terminated in this call: never re-added from an inventory read afterwards.
    gone: HashSet<String>,
    /// Health observed in this call, newer than the inventory's.
    observed: HashMap<String, Verdict>,
}

impl Fleet {
    /// Read the provider's inventory unless this call already did. Instances the
    /// executor terminated earlier in the call are left out even if the provider still
    /// lists them; instances it launched that the provider does not list yet (eventual
    /// consistency) are kept.
    pub async fn load(&mut self, provider: &dyn Provider, owner: &str) {
        if self.loaded {
            return;
        }
        let inventory = provider.inventory(owner).await;
        self.loaded = true;
        self.complete = inventory.complete;
        for instance in inventory.instances {
            if self.gone.contains(instance.id.as_str()) {
                continue;
            }
            // The inventory is newer than anything observed before it was read.
            self.observed.remove(instance.id.as_str());
            self.insert(instance);
        }
    }

    /// Whether the inventory was read in this call and the read was complete.
    pub fn is_complete(&self) -> bool {
        self.loaded && self.complete
    }

    /// An instance by id.
    pub fn get(&self, id: &str) -> Option<&Instance> {
        self.instances.get(id)
    }

    /// The group's live instances (this group's tag; not shutting down), sorted by id.
    pub fn members(&self, group: &str) -> Vec<&Instance> {
        self.by_group
            .get(group)
            .into_iter()
            .flatten()
            .filter_map(|id| self.instances.get(id))
            .filter(|i| phoenix_core::drift::counts(i))
            .collect()
    }

    /// Instances carrying a launch token.
    pub fn with_token(&self, token: &str) -> Vec<&Instance> {
        self.by_token
            .get(token)
            .into_iter()
            .flatten()
            .filter_map(|id| self.instances.get(id))
            .collect()
    }

    /// Health observed in this call, if any.
    pub fn observed(&self, id: &str) -> Option<Verdict> {
        self.observed.get(id).copied()
    }

    /// Instances the executor launched or found by launch token: added unless already
    /// known (the inventory's copy carries health; a launch answer does not).
    pub fn learn(&mut self, instances: &[Instance]) {
        for instance in instances {
            let id = instance.id.as_str();
            if !self.instances.contains_key(id) && !self.gone.contains(id) {
                self.insert(instance.clone());
            }
        }
    }

    /// Instances the executor terminated (or that the provider says are gone).
    pub fn terminated(&mut self, ids: &[String]) {
        for id in ids {
            self.remove(id);
            self.observed.remove(id);
            self.gone.insert(id.clone());
        }
    }

    /// A terminate call failed: these may or may not be gone. They stay members but
    /// are not counted healthy for the rest of the call.
    pub fn uncertain(&mut self, ids: &[String]) {
        for id in ids {
            self.observed.insert(id.clone(), Verdict::Unknown);
        }
    }

    /// Health verdicts observed now (health call or probes).
    pub fn observe(&mut self, verdicts: &HashMap<String, Verdict>) {
        for (id, verdict) in verdicts {
            if !self.gone.contains(id) {
                self.observed.insert(id.clone(), *verdict);
            }
        }
    }

    fn insert(&mut self, instance: Instance) {
        self.remove(&instance.id);
        if let Some(group) = instance.group() {
            self.by_group
                .entry(group.to_string())
                .or_default()
                .insert(instance.id.to_string());
        }
        if let Some(token) = instance.tag(tags::LAUNCH_TOKEN) {
            self.by_token
                .entry(token.to_string())
                .or_default()
                .insert(instance.id.to_string());
        }
        self.instances.insert(instance.id.to_string(), instance);
    }

    fn remove(&mut self, id: &str) {
        let Some(old) = self.instances.remove(id) else {
            return;
        };
        if let Some(ids) = old.group().and_then(|g| self.by_group.get_mut(g)) {
            ids.remove(id);
        }
        if let Some(ids) = old
            .tag(tags::LAUNCH_TOKEN)
            .and_then(|t| self.by_token.get_mut(t))
        {
            ids.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::SystemTime;

    use async_trait::async_trait;
    use phoenix_cloud::{LaunchRequest, Provider, ProviderError};
    use phoenix_core::model::{Instance, InstanceHealth, InstanceState, Inventory};
    use phoenix_core::tags;

    use super::{Fleet, Verdict};

    fn instance(id: &str, group: &str, token: &str) -> Instance {
        Instance {
            id: id.into(),
            state: InstanceState::Running,
            health: InstanceHealth::Healthy,
            image: "ami-1".into(),
            instance_type: "t3.micro".into(),
            subnet_id: None,
            security_group_ids: Arc::from([]),
            launch_time: None,
            private_ip: None,
            tags: [(tags::GROUP, group), (tags::LAUNCH_TOKEN, token)]
                .into_iter()
                .collect(),
        }
    }

    /// Lists a fixed fleet and counts inventory calls.
    #[derive(Debug)]
    struct Listed {
        instances: Vec<Instance>,
        complete: bool,
        calls: AtomicU32,
    }

    #[async_trait]
    impl Provider for Listed {
        fn name(&self) -> &str {
            "listed"
        }
        fn type_name(&self) -> &'static str {
            "sim"
        }
        async fn inventory(&self, _owner: &str) -> Inventory {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Inventory {
                provider: "listed".to_string(),
                complete: self.complete,
                collected_at: SystemTime::UNIX_EPOCH,
                instances: self.instances.clone(),
                error: None,
            }
        }
        async fn launch(&self, _: &LaunchRequest) -> Result<Vec<Instance>, ProviderError> {
            Ok(Vec::new())
        }
        async fn terminate(&self, _: &[String]) -> Result<(), ProviderError> {
            Ok(())
        }
        async fn health(
            &self,
            _: &[String],
        ) -> Result<BTreeMap<String, InstanceHealth>, ProviderError> {
            Ok(BTreeMap::new())
        }
        async fn find_by_launch_token(
            &self,
            _: &str,
            _: &str,
        ) -> Result<Vec<Instance>, ProviderError> {
            Ok(Vec::new())
        }
    }

    fn listed(instances: Vec<Instance>, complete: bool) -> Listed {
        Listed {
            instances,
            complete,
            calls: AtomicU32::new(0),
        }
    }

    fn ids(v: &[&Instance]) -> Vec<String> {
        v.iter().map(|i| i.id.to_string()).collect()
    }

    #[tokio::test]
    async fn reads_once_and_indexes_by_group_and_token() {
        let p = listed(
            vec![
                instance("i-2", "web", "t1"),
                instance("i-1", "web", "t1"),
                instance("i-3", "api", "t2"),
            ],
            true,
        );
        let mut fleet = Fleet::default();
        assert!(!fleet.is_complete(), "nothing read yet");
        fleet.load(&p, "acme").await;
        fleet.load(&p, "acme").await;
        assert_eq!(p.calls.load(Ordering::SeqCst), 1);
        assert!(fleet.is_complete());
        assert_eq!(ids(&fleet.members("web")), ["i-1", "i-2"]);
        assert_eq!(ids(&fleet.members("api")), ["i-3"]);
        assert!(fleet.members("db").is_empty());
        assert_eq!(ids(&fleet.with_token("t1")), ["i-1", "i-2"]);
    }

    #[tokio::test]
    async fn own_launches_and_terminations_are_kept_across_a_later_read() {
        // Launched and terminated before the inventory is read: the provider still
        // lists i-1 and does not list i-9 yet.
        let p = listed(
            vec![instance("i-1", "web", "t0"), instance("i-2", "web", "t0")],
            true,
        );
        let mut fleet = Fleet::default();
        fleet.learn(&[instance("i-9", "web", "t9")]);
        fleet.terminated(&["i-1".to_string()]);
        fleet.load(&p, "acme").await;
        assert_eq!(ids(&fleet.members("web")), ["i-2", "i-9"]);
        // And after it: the view follows.
        fleet.learn(&[instance("i-8", "web", "t9")]);
        fleet.terminated(&["i-2".to_string()]);
        assert_eq!(ids(&fleet.members("web")), ["i-8", "i-9"]);
        assert_eq!(ids(&fleet.with_token("t9")), ["i-8", "i-9"]);
        assert!(fleet.with_token("t0").is_empty());
    }

    #[tokio::test]
    async fn observed_health_overrides_until_a_newer_read() {
        let p = listed(vec![instance("i-1", "web", "t")], false);
        let mut fleet = Fleet::default();
        fleet.observe(&HashMap::from([("i-1".to_string(), Verdict::Unhealthy)]));
        fleet.load(&p, "acme").await;
        assert_eq!(fleet.observed("i-1"), None, "the read is newer");
        assert!(!fleet.is_complete(), "an incomplete read stays incomplete");
        fleet.uncertain(&["i-1".to_string()]);
        assert_eq!(fleet.observed("i-1"), Some(Verdict::Unknown));
        assert_eq!(ids(&fleet.members("web")), ["i-1"], "still a member");
    }
}
