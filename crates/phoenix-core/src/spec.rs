//! Desired-state spec v1: one `InstanceGroup` document per file (design section 2).
//!
//! Parsing is strict: unknown keys, duplicate keys, unknown tags, a second document and
//! out-of-range values are errors. Checks that concern one value live in that value's
//! `Deserialize` impl, so the parser reports them with their line and column; the few
//! checks that relate two fields run afterwards and name the field path instead.
//! [`parse_group`] is the entry point: text in, a validated group and its hash out.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::hash::{SpecHash, spec_hash};
use crate::sorted_map::SortedMap;
use crate::text::{Interner, Text};
use crate::{tags, yaml};

/// Highest `spec.replicas` accepted.
pub const MAX_REPLICAS: u32 = 10_000;
/// Longest group name accepted.
pub const MAX_NAME_LEN: usize = 63;

/// A desired-state document: `apiVersion: phoenix/v1`, `kind: InstanceGroup`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InstanceGroup {
    /// Always `phoenix/v1` today.
    pub api_version: ApiVersion,
    /// Always `InstanceGroup` today.
    pub kind: Kind,
    /// Name and labels.
    pub metadata: Metadata,
    /// What to run and how to replace it.
    pub spec: GroupSpec,
}

impl InstanceGroup {
    /// The group's name.
    pub fn name(&self) -> &GroupName {
        &self.metadata.name
    }

    /// Swap every string of the document for `interner`'s shared copy of it. A
    /// repository's specs repeat the same providers, instance types, subnets, security
    /// groups, label and tag keys (and often images and user data): the loader shares
    /// them so 100,000 specs hold each once. Equality, hashing and serialization are
    /// unchanged; only allocations are.
    pub fn share_strings(&mut self, interner: &mut Interner) {
        interner.share(&mut self.metadata.name.0);
        for (key, value) in self.metadata.labels.entries_mut() {
            interner.share(key);
            interner.share(value);
        }
        let spec = &mut self.spec;
        interner.share(&mut spec.provider.0);
        let template = &mut spec.template;
        interner.share(&mut template.image.0);
        interner.share(&mut template.instance_type.0);
        let lists = [&mut template.subnet_ids, &mut template.security_group_ids];
        for value in lists.into_iter().flat_map(|list| list.iter_mut()) {
            interner.share(&mut value.0);
        }
        for value in [&mut template.key_name, &mut template.user_data]
            .into_iter()
            .flatten()
        {
            interner.share(&mut value.0);
        }
        for (key, value) in template.tags.entries_mut() {
            interner.share(&mut key.0);
            if let TagValue::String(text) = value {
                interner.share(text);
            }
        }
        if let Some(traffic) = spec.traffic.as_deref_mut() {
            for tg in traffic.target_groups.iter_mut() {
                interner.share(&mut tg.0);
            }
        }
    }

    /// The spec hash of this group: `metadata.name` plus `spec.template`.
    pub fn hash(&self) -> SpecHash {
        spec_hash(self.metadata.name.as_str(), &self.spec.template)
    }
}

/// The schema version of a desired-state document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum ApiVersion {
    /// `phoenix/v1`
    #[serde(rename = "phoenix/v1")]
    V1,
}

/// The kind of a desired-state document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Kind {
    /// `InstanceGroup`
    InstanceGroup,
}

/// `metadata`: the group's identity. Labels are free-form and not hashed.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Unique in the repository.
    pub name: GroupName,
    /// Free-form labels, not hashed. Sorted by key, like every map in the spec.
    #[serde(default, skip_serializing_if = "SortedMap::is_empty")]
    pub labels: SortedMap<Text, Text>,
}

/// `spec`: everything about the group. Only `template` is hashed.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GroupSpec {
    /// A provider name from the daemon config.
    pub provider: ProviderName,
    /// How many instances should run. Not hashed: scaling never replaces.
    pub replicas: Replicas,
    /// What each instance is. Hashed: any change here replaces instances.
    pub template: Template,
    /// How replacements roll out.
    #[serde(default)]
    pub rollout: Rollout,
    /// How instance health is judged.
    #[serde(default)]
    pub health: Health,
    /// Whether plans run on their own or wait for approval.
    #[serde(default)]
    pub approval: Approval,
    /// A suspended group is observed and reported but never acted on.
    #[serde(default)]
    pub suspend: bool,
    /// Load balancer target groups the instances serve (design section 11). Not
    /// hashed: changing it re-registers, never replaces. Boxed: most groups have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<Box<Traffic>>,
}

/// `spec.traffic`: the ELBv2 target groups a group's instances are registered in. Not
/// hashed. Every instance that joins is registered and waited in service before it
/// counts for the healthy floor; every instance that leaves is deregistered and drained
/// before it is terminated.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Traffic {
    /// Target group ARNs (for the sim, its configured target group names), at least one,
    /// no duplicates.
    pub target_groups: Box<[StrictString]>,
    /// The port instances are registered on; default: each target group's own port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// A cap on waiting for draining; default: the target group's deregistration
    /// delay plus 30s.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::duration::option"
    )]
    pub drain: Option<Duration>,
}

impl Traffic {
    /// The target groups as plain strings, in the spec's order.
    pub fn target_group_names(&self) -> Vec<String> {
        self.target_groups.iter().map(|t| t.to_string()).collect()
    }
}

/// `spec.template`: the hashed description of one instance.
///
/// String fields must be YAML strings: `instanceType: 123` is refused rather than
/// silently read as the string `"123"`, because the hash distinguishes the two.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Template {
    /// The golden image, e.g. an AMI id.
    pub image: StrictString,
    /// The instance type, e.g. `t3.micro`.
    pub instance_type: StrictString,
    /// Subnets to spread instances over. (Boxed slices, like every list in the spec:
    /// exact size and 16 bytes inline, for up to 100,000 specs held at once.)
    #[serde(default, skip_serializing_if = "<[_]>::is_empty")]
    pub subnet_ids: Box<[StrictString]>,
    /// Security groups attached to every instance.
    #[serde(default, skip_serializing_if = "<[_]>::is_empty")]
    pub security_group_ids: Box<[StrictString]>,
    /// SSH key pair name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<StrictString>,
    /// Instance user data (plain text; providers encode it as needed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<StrictString>,
    /// Extra tags, sorted by key. Values keep their YAML type in the hash; providers
    /// write them as text.
    #[serde(default, skip_serializing_if = "SortedMap::is_empty")]
    pub tags: SortedMap<TagKey, TagValue>,
}

/// `spec.rollout`. Not hashed.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rollout {
    /// rolling (default), blue-green or canary.
    #[serde(default)]
    pub strategy: Strategy,
    /// How many instances above `replicas` may exist during a rollout. Default 1.
    #[serde(default = "default_max_surge")]
    pub max_surge: IntOrPercent,
    /// How many instances below `replicas` may be unavailable. Default 0.
    #[serde(default = "default_max_unavailable")]
    pub max_unavailable: IntOrPercent,
    /// How long a new generation must stay healthy before old instances go. Default 0s.
    #[serde(default, with = "crate::duration")]
    pub bake: Duration,
    /// Terminate a failed generation and keep the old one. Opt-in; default false.
    #[serde(default)]
    pub auto_rollback: bool,
}

fn default_max_surge() -> IntOrPercent {
    IntOrPercent::Count(1)
}

fn default_max_unavailable() -> IntOrPercent {
    IntOrPercent::Count(0)
}

impl Default for Rollout {
    fn default() -> Self {
        Self {
            strategy: Strategy::default(),
            max_surge: default_max_surge(),
            max_unavailable: default_max_unavailable(),
            bake: Duration::ZERO,
            auto_rollback: false,
        }
    }
}

/// The replacement strategy of a group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Launch up to `maxSurge`, wait healthy, terminate as many old.
    #[default]
    Rolling,
    /// Launch a full new generation, wait healthy, bake, terminate the old one.
    BlueGreen,
    /// One new instance, bake, then continue as rolling.
    Canary,
}

/// `spec.health`. Not hashed.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Health {
    /// How health is judged. Default: the provider's status checks.
    #[serde(default)]
    pub check: HealthCheck,
    /// The HTTP probe, required when `check: http` (boxed: most groups have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<Box<HttpCheck>>,
    /// Time after launch during which failing checks do not count. Default 30s.
    #[serde(default = "default_grace", with = "crate::duration")]
    pub grace: Duration,
    /// Time after launch by which an instance must be healthy. Default 5m.
    #[serde(default = "default_deadline", with = "crate::duration")]
    pub deadline: Duration,
}

fn default_grace() -> Duration {
    Duration::from_secs(30)
}

fn default_deadline() -> Duration {
    Duration::from_secs(300)
}

impl Default for Health {
    fn default() -> Self {
        Self {
            check: HealthCheck::default(),
            http: None,
            grace: default_grace(),
            deadline: default_deadline(),
        }
    }
}

/// How instance health is judged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HealthCheck {
    /// The provider's own status checks.
    #[default]
    Provider,
    /// An HTTP GET against the instance's private address.
    Http,
    /// Running counts as healthy.
    None,
}

/// `spec.health.http`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    /// TCP port of the probe.
    pub port: u16,
    /// Request path; default `/`.
    #[serde(default = "default_http_path")]
    pub path: String,
}

fn default_http_path() -> String {
    "/".to_string()
}

/// Whether plans for a group run on their own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Approval {
    /// Plans run as soon as they are made.
    #[default]
    Auto,
    /// Plans wait for `POST /api/v1/plans/{id}/approve`.
    Manual,
}

/// A group name: `[a-z0-9-]`, 1 to 63 characters, no leading or trailing `-`.
///
/// Shared [`Text`]: maps all over the daemon are keyed by group name, 100,000 of them in
/// a large repository, and a clone is then a reference count, not a copy. Ordering,
/// equality, hashing, `Debug` and serialization are those of the text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupName(Text);

impl GroupName {
    /// Check and wrap a name.
    pub fn new(name: impl Into<String>) -> Result<Self, String> {
        let name = name.into();
        let valid_chars = name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'));
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            Err(format!(
                "metadata.name `{name}` must be 1 to {MAX_NAME_LEN} characters long"
            ))
        } else if !valid_chars {
            Err(format!(
                "metadata.name `{name}` may contain only lowercase letters, digits and `-`"
            ))
        } else if name.starts_with('-') || name.ends_with('-') {
            Err(format!(
                "metadata.name `{name}` must not start or end with `-`"
            ))
        } else {
            Ok(Self(Text::from(name)))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The shared text (a clone of it shares the name's allocation).
    pub fn text(&self) -> &Text {
        &self.0
    }
}

impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for GroupName {
    /// The bare text, as a transparent `String` would.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for GroupName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        GroupName::new(name).map_err(de::Error::custom)
    }
}

/// `spec.provider`: a non-empty provider name from the daemon config.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ProviderName(Text);

impl ProviderName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProviderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ProviderName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = Text::deserialize(deserializer)?;
        if name.trim().is_empty() {
            return Err(de::Error::custom(
                "spec.provider must name a provider from the daemon config",
            ));
        }
        Ok(Self(name))
    }
}

/// `spec.replicas`: 0 to 10,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Replicas(u32);

impl Replicas {
    /// Check and wrap a replica count.
    pub fn new(count: u32) -> Result<Self, String> {
        if count > MAX_REPLICAS {
            Err(format!(
                "spec.replicas must be between 0 and {MAX_REPLICAS}, got {count}"
            ))
        } else {
            Ok(Self(count))
        }
    }

    /// The count.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Replicas {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Replicas;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "an integer from 0 to {MAX_REPLICAS}")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Replicas, E> {
                let count = u32::try_from(v).unwrap_or(u32::MAX);
                Replicas::new(count).map_err(|_| {
                    E::custom(format!(
                        "spec.replicas must be between 0 and {MAX_REPLICAS}, got {v}"
                    ))
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Replicas, E> {
                Err(E::custom(format!(
                    "spec.replicas must be between 0 and {MAX_REPLICAS}, got {v}"
                )))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// `maxSurge` / `maxUnavailable`: an absolute count or a percentage of `replicas`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntOrPercent {
    /// An absolute number of instances.
    Count(u32),
    /// A percentage of `replicas`, 0 to 100.
    Percent(u8),
}

impl IntOrPercent {
    /// Resolve against a replica count. Percentages of surge round up and of
    /// unavailability round down, as Kubernetes does.
    pub fn resolve(self, replicas: u32, round_up: bool) -> u32 {
        match self {
            IntOrPercent::Count(n) => n,
            IntOrPercent::Percent(p) => {
                let scaled = u64::from(replicas) * u64::from(p);
                let value = if round_up {
                    scaled.div_ceil(100)
                } else {
                    scaled / 100
                };
                u32::try_from(value).unwrap_or(u32::MAX)
            }
        }
    }
}

impl fmt::Display for IntOrPercent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrPercent::Count(n) => write!(f, "{n}"),
            IntOrPercent::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for IntOrPercent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            IntOrPercent::Count(n) => serializer.serialize_u32(*n),
            IntOrPercent::Percent(_) => serializer.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrPercent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IntOrPercent;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer or a percentage such as \"25%\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IntOrPercent, E> {
                u32::try_from(v)
                    .map(IntOrPercent::Count)
                    .map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IntOrPercent, E> {
                Err(E::custom(format!("must not be negative, got {v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IntOrPercent, E> {
                let percent = v
                    .strip_suffix('%')
                    .and_then(|digits| digits.parse::<u8>().ok())
                    .filter(|p| *p <= 100);
                percent.map(IntOrPercent::Percent).ok_or_else(|| {
                    E::custom(format!(
                        "`{v}` is neither an integer nor a percentage from 0% to 100%"
                    ))
                })
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A YAML value that must be a string: numbers, booleans and null are refused.
///
/// Held as a [`Text`] (one word inline), since a template holds several and a
/// repository up to 100,000 templates; the source's loader makes equal strings of
/// different specs one allocation (see [`InstanceGroup::share_strings`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct StrictString(Text);

impl StrictString {
    /// Wrap a string.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Text::from(value.into()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StrictString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for StrictString {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for StrictString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = StrictString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StrictString, E> {
                Ok(StrictString(v.into()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<StrictString, E> {
                Ok(StrictString(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StrictString, E> {
                Err(E::custom(format!(
                    "expected a string, found the number {v}; quote it as \"{v}\""
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StrictString, E> {
                Err(E::custom(format!(
                    "expected a string, found the number {v}; quote it as \"{v}\""
                )))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<StrictString, E> {
                Err(E::custom(format!(
                    "expected a string, found the number {v}; quote it as \"{v}\""
                )))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<StrictString, E> {
                Err(E::custom(format!(
                    "expected a string, found the boolean {v}; quote it as \"{v}\""
                )))
            }
            fn visit_unit<E: de::Error>(self) -> Result<StrictString, E> {
                Err(E::custom("expected a string, found null"))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A user tag key in `spec.template.tags`: 1 to 128 characters, not `phoenix:` or `aws:`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct TagKey(Text);

impl TagKey {
    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Tag maps can be searched by plain text: `template.tags.get("app")`. The order of
/// `TagKey` is the order of its text, as `Borrow` requires.
impl std::borrow::Borrow<str> for TagKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for TagKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let key = Text::deserialize(deserializer)?;
        if key.is_empty() || key.chars().count() > 128 {
            return Err(de::Error::custom(format!(
                "tag key `{key}` must be 1 to 128 characters long"
            )));
        }
        let lower = key.to_ascii_lowercase();
        if lower.starts_with(tags::RESERVED_PREFIX) || lower.starts_with(tags::AWS_RESERVED_PREFIX)
        {
            return Err(de::Error::custom(format!(
                "tag key `{key}` uses a reserved prefix (`{}` or `{}`)",
                tags::RESERVED_PREFIX,
                tags::AWS_RESERVED_PREFIX
            )));
        }
        Ok(Self(key))
    }
}

/// A user tag value: a YAML scalar that keeps its type for the hash.
#[derive(Debug, Clone, PartialEq)]
pub enum TagValue {
    /// A string.
    String(Text),
    /// An integer.
    Integer(i64),
    /// A finite floating-point number.
    Float(f64),
    /// A boolean (only `true`/`false`: YAML 1.2).
    Bool(bool),
}

impl fmt::Display for TagValue {
    /// The text written to the cloud, which only stores strings.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TagValue::String(s) => f.write_str(s),
            TagValue::Integer(i) => write!(f, "{i}"),
            TagValue::Float(x) => write!(f, "{x}"),
            TagValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl Serialize for TagValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            TagValue::String(s) => serializer.serialize_str(s),
            TagValue::Integer(i) => serializer.serialize_i64(*i),
            TagValue::Float(x) => serializer.serialize_f64(*x),
            TagValue::Bool(b) => serializer.serialize_bool(*b),
        }
    }
}

impl<'de> Deserialize<'de> for TagValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = TagValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TagValue, E> {
                Ok(TagValue::String(v.into()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<TagValue, E> {
                Ok(TagValue::String(v.into()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<TagValue, E> {
                Ok(TagValue::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<TagValue, E> {
                Ok(TagValue::Integer(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<TagValue, E> {
                i64::try_from(v)
                    .map(TagValue::Integer)
                    .map_err(|_| E::custom(format!("tag value {v} is too large; quote it")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<TagValue, E> {
                if v.is_finite() {
                    Ok(TagValue::Float(v))
                } else {
                    Err(E::custom(
                        "tag value must be a finite number; quote it to keep it as text",
                    ))
                }
            }
            fn visit_unit<E: de::Error>(self) -> Result<TagValue, E> {
                Err(E::custom(
                    "tag value must not be null; use \"\" for an empty value",
                ))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// Why a desired-state document was refused. The file path is added by the caller,
/// which is the one that knows it (the core performs no IO).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SpecError {
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// 1-based column, when known.
    pub column: Option<u64>,
    /// What is wrong. Semantic errors start with the field path.
    pub message: String,
}

impl SpecError {
    fn field(path: &str, message: impl fmt::Display) -> Self {
        Self {
            line: None,
            column: None,
            message: format!("{path}: {message}"),
        }
    }

    /// Display this error prefixed with the file it came from:
    /// `path:line:col: message`, or `path: message` when the position is unknown.
    pub fn in_file<'a>(&'a self, path: &'a str) -> impl fmt::Display + 'a {
        InFile { path, error: self }
    }
}

struct InFile<'a> {
    path: &'a str,
    error: &'a SpecError,
}

impl fmt::Display for InFile<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.error.line, self.error.column) {
            (Some(line), Some(column)) => {
                write!(
                    f,
                    "{}:{}:{}: {}",
                    self.path, line, column, self.error.message
                )
            }
            _ => write!(f, "{}: {}", self.path, self.error.message),
        }
    }
}

impl From<yaml::YamlError> for SpecError {
    fn from(err: yaml::YamlError) -> Self {
        Self {
            line: err.line,
            column: err.column,
            message: err.message,
        }
    }
}

/// A parsed, validated group with its spec hash.
///
/// The document is shared (`Arc`): a revision holds every group once, and the planner,
/// executor and CLI take it from there without copying 100,000 specs per pass.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedGroup {
    /// The document.
    pub group: Arc<InstanceGroup>,
    /// Its spec hash.
    pub hash: SpecHash,
}

/// Parse and validate one desired-state document, and compute its hash.
pub fn parse_group(text: &str) -> Result<ParsedGroup, SpecError> {
    if text.trim().is_empty() {
        return Err(SpecError {
            line: None,
            column: None,
            message: "file is empty; expected one InstanceGroup document".into(),
        });
    }
    let group: InstanceGroup = yaml::from_str(text)?;
    validate(&group)?;
    let hash = group.hash();
    Ok(ParsedGroup {
        group: Arc::new(group),
        hash,
    })
}

/// [`parse_group`], with the document's strings shared through `interner` (see
/// [`InstanceGroup::share_strings`]).
pub fn parse_group_shared(text: &str, interner: &mut Interner) -> Result<ParsedGroup, SpecError> {
    let mut parsed = parse_group(text)?;
    if let Some(group) = Arc::get_mut(&mut parsed.group) {
        group.share_strings(interner);
    }
    Ok(parsed)
}

/// Checks that relate two fields; single values were checked while parsing.
fn validate(group: &InstanceGroup) -> Result<(), SpecError> {
    let spec = &group.spec;
    if spec.health.check == HealthCheck::Http && spec.health.http.is_none() {
        return Err(SpecError::field(
            "spec.health.http",
            "required when spec.health.check is `http`",
        ));
    }
    if spec.health.deadline < spec.health.grace {
        return Err(SpecError::field(
            "spec.health.deadline",
            format!(
                "must not be shorter than spec.health.grace ({} < {})",
                crate::duration::format(spec.health.deadline),
                crate::duration::format(spec.health.grace)
            ),
        ));
    }
    let replicas = spec.replicas.get();
    let surge = spec.rollout.max_surge.resolve(replicas, true);
    let unavailable = spec.rollout.max_unavailable.resolve(replicas, false);
    if surge == 0 && unavailable == 0 && replicas > 0 {
        return Err(SpecError::field(
            "spec.rollout",
            "maxSurge and maxUnavailable are both 0, so no replacement could ever make progress",
        ));
    }
    if let Some(traffic) = spec.traffic.as_deref() {
        validate_traffic(traffic)?;
    }
    if spec.template.image.is_empty() {
        return Err(SpecError::field("spec.template.image", "must not be empty"));
    }
    if spec.template.instance_type.is_empty() {
        return Err(SpecError::field(
            "spec.template.instanceType",
            "must not be empty",
        ));
    }
    Ok(())
}

/// `spec.traffic`: at least one target group, none empty or named twice, a port that is
/// not 0, a drain cap that is not 0.
fn validate_traffic(traffic: &Traffic) -> Result<(), SpecError> {
    if traffic.target_groups.is_empty() {
        return Err(SpecError::field(
            "spec.traffic.targetGroups",
            "must name at least one target group",
        ));
    }
    for (i, tg) in traffic.target_groups.iter().enumerate() {
        let path = format!("spec.traffic.targetGroups[{i}]");
        if tg.is_empty() || tg.as_str().chars().any(char::is_whitespace) {
            return Err(SpecError::field(
                &path,
                "must be a target group ARN (not empty, no whitespace)",
            ));
        }
        if traffic.target_groups[..i].contains(tg) {
            return Err(SpecError::field(
                &path,
                format!("`{}` is listed twice", tg.as_str()),
            ));
        }
    }
    if traffic.port == Some(0) {
        return Err(SpecError::field("spec.traffic.port", "must be 1 to 65535"));
    }
    if traffic.drain == Some(Duration::ZERO) {
        return Err(SpecError::field(
            "spec.traffic.drain",
            "must be longer than 0s (leave it out for the target group's own delay)",
        ));
    }
    Ok(())
}
