//! The shared inventory model: what a provider observed, in provider-neutral terms.
//!
//! Providers (in `phoenix-cloud`) fill these types from their APIs; drift
//! classification and planning read them. Time is a plain `SystemTime` observed by the
//! caller; nothing here reads the clock.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::sorted_map::SortedMap;
use crate::tags;
use crate::text::Text;

/// The lifecycle state of an instance, as the provider reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    /// Starting up.
    Pending,
    /// Running.
    Running,
    /// Being stopped.
    Stopping,
    /// Stopped (counts as unhealthy: Phoenix replaces, never restarts).
    Stopped,
    /// Being terminated.
    ShuttingDown,
    /// Gone. Inventory leaves these out.
    Terminated,
}

impl InstanceState {
    /// Whether the instance is, or is becoming, a working member of its group.
    pub fn is_live(self) -> bool {
        matches!(self, InstanceState::Pending | InstanceState::Running)
    }

    /// The lowercase name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Pending => "pending",
            InstanceState::Running => "running",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
            InstanceState::ShuttingDown => "shutting-down",
            InstanceState::Terminated => "terminated",
        }
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the provider's health signal says about an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceHealth {
    /// Checks pass.
    Healthy,
    /// Checks fail.
    Unhealthy,
    /// No verdict yet (still initialising, or no checks available).
    Unknown,
}

impl InstanceHealth {
    /// The lowercase name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceHealth::Healthy => "healthy",
            InstanceHealth::Unhealthy => "unhealthy",
            InstanceHealth::Unknown => "unknown",
        }
    }
}

impl fmt::Display for InstanceHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One instance as observed by a provider.
///
/// Strings are [`Text`]: providers intern them per inventory pass, so the fleet's
/// repeated images, types, subnets and tags are stored once however many instances
/// carry them, and clones (into plans, the status snapshot) copy pointers.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// Provider-assigned id, e.g. `i-0abc…`.
    pub id: Text,
    /// Lifecycle state.
    pub state: InstanceState,
    /// Provider health signal.
    pub health: InstanceHealth,
    /// Image the instance runs.
    pub image: Text,
    /// Instance type.
    pub instance_type: Text,
    /// Subnet, when the provider has one.
    pub subnet_id: Option<Text>,
    /// Security groups, sorted.
    pub security_group_ids: Arc<[Text]>,
    /// Launch time.
    pub launch_time: Option<SystemTime>,
    /// Private IPv4 address (the HTTP health probe targets it). EC2's private address
    /// is always IPv4; four bytes inline instead of a string per instance.
    pub private_ip: Option<Ipv4Addr>,
    /// Every tag on the instance, Phoenix's included.
    pub tags: Tags,
}

impl Instance {
    /// A tag's value.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key)
    }

    /// `phoenix:owner`.
    pub fn owner(&self) -> Option<&str> {
        self.tag(tags::OWNER)
    }

    /// `phoenix:group`.
    pub fn group(&self) -> Option<&str> {
        self.tag(tags::GROUP)
    }

    /// `phoenix:spec-hash`, as written (it may not parse if someone edited it).
    pub fn spec_hash(&self) -> Option<&str> {
        self.tag(tags::SPEC_HASH)
    }

    /// `phoenix:commit`.
    pub fn commit(&self) -> Option<&str> {
        self.tag(tags::COMMIT)
    }

    /// `phoenix:plan`.
    pub fn plan(&self) -> Option<&str> {
        self.tag(tags::PLAN)
    }

    /// `phoenix:launch-token`.
    pub fn launch_token(&self) -> Option<&str> {
        self.tag(tags::LAUNCH_TOKEN)
    }
}

/// An instance's tags: unique keys in sorted order, held in one shared allocation.
///
/// The same [`SortedMap`] the spec's tag and label maps are, so tags have one sorted-map
/// implementation. Instances launched together carry the same set, and an [`Interner`]
/// makes them share it; changing one instance's tags copies its set first (copy on
/// write). Reads (`get`, `iter`) are what the planner and the snapshot do per instance,
/// so the set is a sorted slice searched by bisection rather than a tree of nodes.
///
/// [`Interner`]: crate::text::Interner
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Tags(SortedMap<Text, Text>);

impl Tags {
    /// No tags.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(Text::as_str)
    }

    /// The shared value of `key`.
    pub fn get_text(&self, key: &str) -> Option<&Text> {
        self.0.get(key)
    }

    /// Whether `key` is set.
    pub fn contains_key(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// How many tags there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every tag, by key.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Set `key` to `value`, returning the old value.
    pub fn insert(&mut self, key: impl Into<Text>, value: impl Into<Text>) -> Option<Text> {
        self.0.insert(key.into(), value.into())
    }

    /// Remove `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Text> {
        self.0.remove(key)
    }

    /// Whether this is the only handle on its allocation.
    pub(crate) fn is_unique(&self) -> bool {
        self.0.is_unique()
    }

    /// Whether two sets share one allocation (an interner made them).
    pub fn shares(&self, other: &Tags) -> bool {
        self.0.shares(&other.0)
    }
}

impl fmt::Debug for Tags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Later pairs win over earlier ones with the same key, as when collecting a map.
impl<K: Into<Text>, V: Into<Text>> FromIterator<(K, V)> for Tags {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl From<BTreeMap<String, String>> for Tags {
    fn from(map: BTreeMap<String, String>) -> Self {
        map.into_iter().collect()
    }
}

impl From<&BTreeMap<String, String>> for Tags {
    fn from(map: &BTreeMap<String, String>) -> Self {
        map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }
}

impl PartialEq<BTreeMap<String, String>> for Tags {
    fn eq(&self, other: &BTreeMap<String, String>) -> bool {
        self.len() == other.len()
            && self
                .iter()
                .zip(other)
                .all(|((k, v), (ok, ov))| k == ok && v == ov)
    }
}

impl Serialize for Tags {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        BTreeMap::<String, String>::deserialize(deserializer).map(Tags::from)
    }
}

/// One provider's inventory pass.
///
/// An incomplete pass (any list call failed) never makes anything `missing` or
/// `orphaned`: what was not seen may still exist.
#[derive(Debug, Clone, PartialEq)]
pub struct Inventory {
    /// The provider's config name.
    pub provider: String,
    /// Whether every list call succeeded.
    pub complete: bool,
    /// When the pass started.
    pub collected_at: SystemTime,
    /// Live instances carrying our owner tag (terminated ones are left out).
    pub instances: Vec<Instance>,
    /// Why the pass is incomplete, when it is.
    pub error: Option<String>,
}
