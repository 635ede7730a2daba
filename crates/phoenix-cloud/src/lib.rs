//! Cloud providers for Phoenix: the [`Provider`] trait, AWS EC2 through the official
//! SDK ([`aws::AwsEc2Provider`]) and the built-in simulated cloud ([`sim::SimProvider`]).
//!
//! This is the only crate that knows a cloud SDK. Everything it hands out is in the
//! provider-neutral terms of [`phoenix_core::model`]. Providers are built once from the
//! daemon configuration by [`build_providers`] and held as `Arc<dyn Provider>`, keyed by
//! their config name; the implementation is chosen by the config `type`.
//!
//! Semantics every provider keeps (the executor relies on them):
//! - [`Provider::inventory`] never fails outright: a failed list call gives an
//!   [`Inventory`] with `complete: false`, the error text and whatever was seen.
//! - [`Provider::launch`] sets every tag at creation and is idempotent per launch token:
//!   it first looks for instances already carrying the token and launches only the
//!   difference, so a retried or re-run step never double-launches.
//! - The traffic calls (design section 11) are idempotent: registering a registered
//!   target or deregistering one that is not registered changes nothing, so a step
//!   re-run after a crash recomputes what is left from [`Provider::target_health`], which
//!   reads a whole target group in one call.

pub mod aws;
mod error;
mod images;
mod rate;
mod retry;
pub mod sim;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use phoenix_core::config::ProviderConfig;
use phoenix_core::model::{Instance, InstanceHealth, Inventory};
use phoenix_core::policy::ImageLookup;
use phoenix_core::spec::GroupName;
use phoenix_core::traffic::Target;
use phoenix_core::{SpecHash, Template, tags};

pub use error::{ErrorKind, ProviderError};
pub use images::ImageCache;
pub use rate::RateLimiter;
pub use retry::Backoff;

/// One cloud account and region (or one sim), as the daemon sees it.
///
/// Object safe; held as `Arc<dyn Provider>`.
#[async_trait]
pub trait Provider: Send + Sync + fmt::Debug {
    /// The provider's config name.
    fn name(&self) -> &str;

    /// The config `type` (`aws_ec2`, `sim`).
    fn type_name(&self) -> &'static str;

    /// Every live instance tagged `phoenix:owner=<owner>`, with health.
    ///
    /// Never an error: any failed call makes the result `complete: false` with the
    /// error text, keeping what was seen. Terminated instances are left out.
    async fn inventory(&self, owner: &str) -> Inventory;

    /// Launch `request.count` instances of the template, all tags set at creation.
    ///
    /// Idempotent per `launch_token`: instances already carrying the token (for this
    /// owner) count towards `count`, and only the difference is launched. Returns every
    /// live instance carrying the token, old and new.
    async fn launch(&self, request: &LaunchRequest) -> Result<Vec<Instance>, ProviderError>;

    /// Terminate instances (in batches). Terminating an already terminated instance is
    /// not an error; an id the provider never knew is [`ErrorKind::NotFound`].
    async fn terminate(&self, ids: &[String]) -> Result<(), ProviderError>;

    /// Health of the given instances. Ids the provider does not report get `Unknown`.
    async fn health(
        &self,
        ids: &[String],
    ) -> Result<BTreeMap<String, InstanceHealth>, ProviderError>;

    /// Live instances of `owner` carrying `phoenix:launch-token=<token>` (health is
    /// `Unknown`: this is a lookup for crash recovery, not an observation).
    async fn find_by_launch_token(
        &self,
        owner: &str,
        token: &str,
    ) -> Result<Vec<Instance>, ProviderError>;

    /// Describe images for `policy.images` (design section 12): one answer per id asked,
    /// [`ImageLookup::NotFound`] for an id the provider does not know. Providers cache
    /// answers per image id for [`IMAGE_CACHE_TTL`].
    ///
    /// The default answers an error: a provider that cannot describe images never has
    /// an image allowed by a policy (fail closed). `aws_ec2` and `sim` implement it.
    async fn describe_images(
        &self,
        ids: &[String],
    ) -> Result<BTreeMap<String, ImageLookup>, ProviderError> {
        let _ = ids;
        Err(ProviderError::Config {
            provider: self.name().to_string(),
            reason: "this provider cannot describe images, so no image passes policy.images"
                .to_string(),
        })
    }

    /// Register instances in a load balancer target group (ELBv2 RegisterTargets).
    /// Registering a registered target changes nothing; a draining one is registered
    /// again. The default answers that the provider has no load balancers.
    async fn register_targets(
        &self,
        target_group: &str,
        targets: &[TargetRef],
    ) -> Result<(), ProviderError> {
        let _ = (target_group, targets);
        Err(self.no_traffic())
    }

    /// Deregister instances from a target group (ELBv2 DeregisterTargets); they drain
    /// for the target group's deregistration delay. A target that is not registered is
    /// left alone.
    async fn deregister_targets(
        &self,
        target_group: &str,
        targets: &[TargetRef],
    ) -> Result<(), ProviderError> {
        let _ = (target_group, targets);
        Err(self.no_traffic())
    }

    /// Every target of a target group with its state, in one read (ELBv2
    /// DescribeTargetHealth without a target list: registered and draining targets).
    async fn target_health(&self, target_group: &str) -> Result<Vec<Target>, ProviderError> {
        let _ = target_group;
        Err(self.no_traffic())
    }

    /// What a target group says about itself: its port and deregistration delay
    /// (ELBv2 DescribeTargetGroups and DescribeTargetGroupAttributes).
    async fn target_group_info(
        &self,
        target_group: &str,
    ) -> Result<TargetGroupInfo, ProviderError> {
        let _ = target_group;
        Err(self.no_traffic())
    }

    /// The error of a traffic call on a provider without load balancers.
    fn no_traffic(&self) -> ProviderError {
        ProviderError::Config {
            provider: self.name().to_string(),
            reason: "this provider has no load balancer target groups (spec.traffic)".to_string(),
        }
    }
}

/// One target to register or deregister: an instance, on a port (`None`: the target
/// group's own port).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetRef {
    /// The instance id.
    pub id: String,
    /// `spec.traffic.port`.
    pub port: Option<u16>,
}

/// What a target group says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetGroupInfo {
    /// How long a deregistered target drains (`deregistration_delay.timeout_seconds`).
    pub deregistration_delay: std::time::Duration,
}

/// How long a provider trusts an image description before asking again.
pub const IMAGE_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// What to launch: a template and the Phoenix tags that identify the generation.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchRequest {
    /// `phoenix:owner`.
    pub owner: String,
    /// `phoenix:group`.
    pub group: GroupName,
    /// The template from the spec.
    pub template: Template,
    /// `phoenix:spec-hash`.
    pub spec_hash: SpecHash,
    /// `phoenix:commit`.
    pub commit: String,
    /// `phoenix:plan`.
    pub plan_id: String,
    /// `phoenix:launch-token`: deterministic per launch step; the idempotency key.
    pub launch_token: String,
    /// How many instances should carry the token when the call returns.
    pub count: u32,
}

impl LaunchRequest {
    /// Every tag the new instances get: the template's tags, then the six Phoenix tags
    /// (template tags cannot use the `phoenix:` prefix, so nothing is overridden).
    pub fn tags(&self) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = self
            .template
            .tags
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_string()))
            .collect();
        out.insert(tags::OWNER.to_string(), self.owner.clone());
        out.insert(tags::GROUP.to_string(), self.group.as_str().to_string());
        out.insert(tags::SPEC_HASH.to_string(), self.spec_hash.to_string());
        out.insert(tags::COMMIT.to_string(), self.commit.clone());
        out.insert(tags::PLAN.to_string(), self.plan_id.clone());
        out.insert(tags::LAUNCH_TOKEN.to_string(), self.launch_token.clone());
        out
    }
}

/// Static AWS credentials, for tests and tools that must not read the environment.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key (never printed).
    pub secret_access_key: String,
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// Options for [`build_providers`] that are not part of the daemon config file.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Use these credentials for every `aws_ec2` provider instead of the standard chain.
    pub aws_static_credentials: Option<StaticCredentials>,
}

/// Build every configured provider, keyed by its config name.
///
/// `state_dir` is the daemon's state folder; each sim keeps its cloud in
/// `<state_dir>/sim/<name>/`. Duplicate names are a configuration error.
pub async fn build_providers(
    configs: &[ProviderConfig],
    state_dir: &Path,
    options: &BuildOptions,
) -> Result<BTreeMap<String, Arc<dyn Provider>>, ProviderError> {
    let mut out: BTreeMap<String, Arc<dyn Provider>> = BTreeMap::new();
    for config in configs {
        if out.contains_key(config.name()) {
            return Err(ProviderError::Config {
                provider: config.name().to_string(),
                reason: "two providers have this name".to_string(),
            });
        }
        let provider: Arc<dyn Provider> = match config {
            ProviderConfig::AwsEc2(c) => {
                let opts = aws::AwsOptions {
                    static_credentials: options.aws_static_credentials.clone(),
                    ..aws::AwsOptions::default()
                };
                Arc::new(aws::AwsEc2Provider::connect(c, &opts).await?)
            }
            ProviderConfig::Sim(c) => Arc::new(sim::SimProvider::open(c, state_dir).await?),
        };
        out.insert(config.name().to_string(), provider);
    }
    Ok(out)
}

/// An empty inventory pass that will be filled in.
pub(crate) fn inventory_start(provider: &str) -> Inventory {
    Inventory {
        provider: provider.to_string(),
        complete: true,
        collected_at: std::time::SystemTime::now(),
        instances: Vec::new(),
        error: None,
    }
}
