//! The shared inventory model: what a provider observed, in provider-neutral terms.
//!
//! Providers (in `phoenix-cloud`) fill these types from their APIs; drift
//! classification and planning read them. Time is a plain `SystemTime` observed by the
//! caller; nothing here reads the clock.

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::tags;

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// Provider-assigned id, e.g. `i-0abc…`.
    pub id: String,
    /// Lifecycle state.
    pub state: InstanceState,
    /// Provider health signal.
    pub health: InstanceHealth,
    /// Image the instance runs.
    pub image: String,
    /// Instance type.
    pub instance_type: String,
    /// Subnet, when the provider has one.
    pub subnet_id: Option<String>,
    /// Security groups, sorted.
    pub security_group_ids: Vec<String>,
    /// Launch time.
    pub launch_time: Option<SystemTime>,
    /// Private address (the HTTP health probe targets it).
    pub private_ip: Option<String>,
    /// Every tag on the instance, Phoenix's included.
    pub tags: BTreeMap<String, String>,
}

impl Instance {
    /// A tag's value.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
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

/// One provider's inventory pass.
///
/// An incomplete pass (any list call failed) never makes anything `missing` or
/// `orphaned`: what was not seen may still exist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
