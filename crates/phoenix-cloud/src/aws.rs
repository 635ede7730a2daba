//! The `aws_ec2` provider: EC2 through the official AWS SDK for Rust.
//!
//! - Credentials and region come from the standard chain (environment, profile, SSO,
//!   web identity, instance metadata) unless static credentials are given; `region`,
//!   `profile` and `endpoint_url` from the config override it.
//! - The SDK's own retries are off: every call goes through this module's retry loop
//!   (jittered exponential backoff on throttling, 5xx and transport errors, up to
//!   `max_attempts`) and a client-side token bucket per kind of call.
//! - Inventory is DescribeInstances filtered on `tag:phoenix:owner`, following NextToken
//!   to the end, plus DescribeInstanceStatus in batches of 100 ids for health.
//! - Launch is crash-safe without relying on ClientToken (moto ignores it): the
//!   launch token is a tag, and every attempt first looks for what already carries it.
//! - Load balancer target groups (`spec.traffic`) through ELBv2, in `elb`.

mod elb;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::Credentials;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{
    Filter, InstanceStateName, ResourceType, SummaryStatus, Tag, TagSpecification,
};
use phoenix_core::config::AwsEc2Config;
use phoenix_core::model::{Instance, InstanceHealth, InstanceState, Inventory};
use phoenix_core::policy::{ImageInfo, ImageLookup};
use phoenix_core::tags;
use phoenix_core::text::{Interner, Text};
use sha2::{Digest, Sha256};

use crate::retry::{Backoff, Retryable, retry};
use crate::{
    LaunchRequest, Provider, ProviderError, RateLimiter, StaticCredentials, TargetGroupInfo,
    TargetRef,
};

/// Most instance ids per TerminateInstances call.
pub const TERMINATE_BATCH: usize = 1000;
/// Most instance ids per DescribeInstanceStatus call (EC2's documented limit).
pub const STATUS_BATCH: usize = 100;
/// Instances per DescribeInstances page asked for by default (EC2's maximum).
pub const DEFAULT_PAGE_SIZE: u32 = 1000;
/// States inventory asks for: everything except `terminated`.
const LIVE_STATES: [&str; 5] = ["pending", "running", "shutting-down", "stopping", "stopped"];

/// Knobs that are not in the config file.
#[derive(Debug, Clone)]
pub struct AwsOptions {
    /// Use these credentials instead of the standard chain.
    pub static_credentials: Option<StaticCredentials>,
    /// First retry delay (before jitter). Default 100 ms.
    pub retry_base: Duration,
    /// Longest retry delay. Default 5 s.
    pub retry_cap: Duration,
    /// Connect timeout. Default 5 s.
    pub connect_timeout: Duration,
    /// Timeout of one HTTP attempt. Default 60 s (moto takes seconds for big lists).
    pub attempt_timeout: Duration,
    /// DescribeInstances `MaxResults`; `None` leaves it out (EC2 then decides; moto
    /// pages at 100 reservations). Default [`DEFAULT_PAGE_SIZE`].
    pub page_size: Option<u32>,
}

impl Default for AwsOptions {
    fn default() -> Self {
        Self {
            static_credentials: None,
            retry_base: Duration::from_millis(100),
            retry_cap: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(60),
            page_size: Some(DEFAULT_PAGE_SIZE),
        }
    }
}

/// The token buckets of one provider (one account and region).
#[derive(Debug)]
struct Budgets {
    run: RateLimiter,
    describe: RateLimiter,
    mutate: RateLimiter,
}

/// EC2 in one account and region.
#[derive(Debug)]
pub struct AwsEc2Provider {
    name: String,
    client: Client,
    /// ELBv2, same credentials, region and endpoint.
    elb: aws_sdk_elasticloadbalancingv2::Client,
    budgets: Budgets,
    max_attempts: u32,
    retry_base: Duration,
    retry_cap: Duration,
    page_size: Option<i32>,
    /// DescribeImages answers per image id (`policy.images`).
    images: crate::ImageCache,
}

/// The outcome of one HTTP attempt, classified.
#[derive(Debug)]
enum AttemptError {
    Throttled {
        code: String,
    },
    Server {
        status: u16,
        code: String,
        message: String,
    },
    Transport(Box<dyn std::error::Error + Send + Sync>),
    Auth {
        code: String,
        message: String,
    },
    NotFound,
    Capacity {
        message: String,
    },
    Client {
        code: String,
        message: String,
    },
}

impl Retryable for AttemptError {
    fn is_retryable(&self) -> bool {
        matches!(
            self,
            AttemptError::Throttled { .. }
                | AttemptError::Server { .. }
                | AttemptError::Transport(_)
        )
    }
}

/// Classify an SDK error once, at the boundary, by HTTP status and the API's error code.
fn classify<E>(err: SdkError<E>) -> AttemptError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code().unwrap_or_default().to_string();
            let message = ctx.err().message().unwrap_or_default().to_string();
            classify_code(status, code, message)
        }
        // Timeouts, connection failures and unreadable answers: the call may not have
        // reached EC2, or its answer got lost. Retried; launches re-check their token.
        _ => AttemptError::Transport(Box::new(err)),
    }
}

fn classify_code(status: u16, code: String, message: String) -> AttemptError {
    match code.as_str() {
        "RequestLimitExceeded" | "Throttling" | "ThrottlingException" | "RequestThrottled" => {
            AttemptError::Throttled { code }
        }
        "AuthFailure"
        | "UnauthorizedOperation"
        | "InvalidClientTokenId"
        | "OptInRequired"
        | "SignatureDoesNotMatch"
        | "ExpiredToken"
        | "RequestExpired"
        | "Blocked" => AttemptError::Auth { code, message },
        "InvalidInstanceID.NotFound" | "InvalidInstanceID.Malformed" => AttemptError::NotFound,
        "InsufficientInstanceCapacity" | "InsufficientCapacity" | "InstanceLimitExceeded" => {
            AttemptError::Capacity { message }
        }
        "InternalError" | "InternalFailure" | "ServiceUnavailable" | "Unavailable" => {
            AttemptError::Server {
                status,
                code,
                message,
            }
        }
        _ if status == 503 => AttemptError::Throttled {
            code: if code.is_empty() {
                "HTTP 503".to_string()
            } else {
                code
            },
        },
        _ if status >= 500 => AttemptError::Server {
            status,
            code,
            message,
        },
        _ if status == 401 || status == 403 => AttemptError::Auth { code, message },
        _ => AttemptError::Client { code, message },
    }
}

impl AwsEc2Provider {
    /// Build the SDK configuration from the standard chain plus the config's overrides.
    pub async fn connect(
        config: &AwsEc2Config,
        options: &AwsOptions,
    ) -> Result<Self, ProviderError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(options.connect_timeout)
                    .operation_attempt_timeout(options.attempt_timeout)
                    .build(),
            );
        if let Some(region) = &config.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(profile) = &config.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(endpoint) = &config.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(creds) = &options.static_credentials {
            loader = loader.credentials_provider(Credentials::new(
                creds.access_key_id.clone(),
                creds.secret_access_key.clone(),
                None,
                None,
                "phoenix-static",
            ));
        }
        let sdk = loader.load().await;
        if sdk.region().is_none() {
            return Err(ProviderError::Config {
                provider: config.name.clone(),
                reason: "no region: set `region` in the provider config, AWS_REGION, or a profile region".to_string(),
            });
        }
        Self::from_sdk_config(config, &sdk, options)
    }

    /// Use an SDK configuration built elsewhere. The SDK's own retries are turned off
    /// (this provider retries itself).
    pub fn from_sdk_config(
        config: &AwsEc2Config,
        sdk: &aws_config::SdkConfig,
        options: &AwsOptions,
    ) -> Result<Self, ProviderError> {
        let ec2_config = aws_sdk_ec2::config::Builder::from(sdk)
            .retry_config(RetryConfig::disabled())
            .build();
        let elb_config = aws_sdk_elasticloadbalancingv2::config::Builder::from(sdk)
            .retry_config(RetryConfig::disabled())
            .build();
        let budget = |rate: f64, burst: u32, key: &str| {
            RateLimiter::new(rate, burst).ok_or_else(|| ProviderError::Config {
                provider: config.name.clone(),
                reason: format!("`{key}` must be a positive number, got {rate}"),
            })
        };
        // Bursts mirror EC2's token buckets in spirit, scaled down: a second's worth.
        let burst = |rate: f64| (rate.ceil() as u32).max(1);
        let budgets = Budgets {
            run: budget(
                config.run_instances_per_second,
                burst(config.run_instances_per_second),
                "run_instances_per_second",
            )?,
            describe: budget(
                config.describe_per_second,
                burst(config.describe_per_second),
                "describe_per_second",
            )?,
            mutate: budget(
                config.mutate_per_second,
                burst(config.mutate_per_second),
                "mutate_per_second",
            )?,
        };
        if config.max_attempts == 0 {
            return Err(ProviderError::Config {
                provider: config.name.clone(),
                reason: "`max_attempts` must be at least 1".to_string(),
            });
        }
        Ok(Self {
            name: config.name.clone(),
            client: Client::from_conf(ec2_config),
            elb: aws_sdk_elasticloadbalancingv2::Client::from_conf(elb_config),
            budgets,
            max_attempts: config.max_attempts,
            retry_base: options.retry_base,
            retry_cap: options.retry_cap,
            page_size: options
                .page_size
                .map(|n| i32::try_from(n.clamp(5, 1000)).expect("at most 1000")),
            images: crate::ImageCache::default(),
        })
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(self.retry_base, self.retry_cap).with_equal_jitter(rand::random())
    }

    /// Turn the last attempt's error into the provider error callers see.
    fn fail(&self, operation: &'static str, (err, attempts): (AttemptError, u32)) -> ProviderError {
        self.fail_with_ids(operation, (err, attempts), &[])
    }

    fn fail_with_ids(
        &self,
        operation: &'static str,
        (err, attempts): (AttemptError, u32),
        ids: &[String],
    ) -> ProviderError {
        let provider = self.name.clone();
        match err {
            AttemptError::Throttled { code } => ProviderError::Throttled {
                provider,
                operation,
                code,
                attempts,
            },
            AttemptError::Server {
                status,
                code,
                message,
            } => ProviderError::Server {
                provider,
                operation,
                status,
                code,
                message,
                attempts,
            },
            AttemptError::Transport(source) => ProviderError::Transport {
                provider,
                operation,
                attempts,
                source,
            },
            AttemptError::Auth { code, message } => ProviderError::Auth {
                provider,
                operation,
                code,
                message,
            },
            AttemptError::NotFound => ProviderError::NotFound {
                provider,
                operation,
                ids: ids.to_vec(),
            },
            AttemptError::Capacity { message } => ProviderError::Capacity {
                provider,
                operation,
                message,
            },
            AttemptError::Client { code, message } => ProviderError::Client {
                provider,
                operation,
                code,
                message,
            },
        }
    }

    /// Every live instance matching `filters`, following NextToken to the end. On a
    /// page that fails for good, returns what the earlier pages gave and the error.
    async fn describe_all(&self, filters: Vec<Filter>) -> (Vec<Instance>, Option<ProviderError>) {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        let mut seen_tokens = BTreeSet::new();
        // One copy of each image, type, subnet and tag set for the whole listing.
        let mut interner = Interner::new();
        loop {
            let page = retry(self.max_attempts, self.backoff(), |_| {
                let request = self
                    .client
                    .describe_instances()
                    .set_filters(Some(filters.clone()))
                    .set_max_results(self.page_size)
                    .set_next_token(token.clone());
                async move {
                    self.budgets.describe.acquire().await;
                    request.send().await.map_err(classify)
                }
            })
            .await;
            let page = match page {
                Ok(page) => page,
                Err(err) => return (out, Some(self.fail("DescribeInstances", err))),
            };
            for reservation in page.reservations() {
                for instance in reservation.instances() {
                    if let Some(instance) = convert(instance, &mut interner)
                        && instance.state != InstanceState::Terminated
                    {
                        out.push(instance);
                    }
                }
            }
            match page.next_token().filter(|t| !t.is_empty()) {
                None => return (out, None),
                Some(next) => {
                    if !seen_tokens.insert(next.to_string()) {
                        let err = ProviderError::Malformed {
                            provider: self.name.clone(),
                            operation: "DescribeInstances",
                            what: "NextToken repeated; paging would never end".to_string(),
                        };
                        return (out, Some(err));
                    }
                    token = Some(next.to_string());
                }
            }
        }
    }

    /// Instances tagged `phoenix:owner=<owner>`, without health: the list part of
    /// [`Provider::inventory`] (what a boto3 paginator over DescribeInstances does).
    pub async fn list_instances(&self, owner: &str) -> (Vec<Instance>, Option<ProviderError>) {
        self.describe_all(vec![tag_filter(tags::OWNER, owner), live_filter()])
            .await
    }

    /// Run `count` instances in one call; a single attempt (the caller re-checks the
    /// launch token before any retry).
    async fn run_once(
        &self,
        request: &LaunchRequest,
        tags: &[Tag],
        subnet: Option<&str>,
        count: u32,
        client_token: String,
    ) -> Result<Vec<Instance>, AttemptError> {
        let template = &request.template;
        let count = i32::try_from(count).unwrap_or(i32::MAX);
        let mut call = self
            .client
            .run_instances()
            .image_id(template.image.as_str())
            .instance_type(template.instance_type.as_str().into())
            .min_count(count)
            .max_count(count)
            .client_token(client_token)
            .set_subnet_id(subnet.map(str::to_string))
            .set_key_name(template.key_name.as_ref().map(|k| k.to_string()))
            .set_user_data(
                template
                    .user_data
                    .as_ref()
                    .map(|u| aws_smithy_types::base64::encode(u.as_bytes())),
            )
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .set_tags(Some(tags.to_vec()))
                    .build(),
            );
        // Top-level SecurityGroupIds: groups passed inside NetworkInterfaces are lost
        // by moto, which would look like drift.
        for sg in &template.security_group_ids {
            call = call.security_group_ids(sg.as_str());
        }
        self.budgets.run.acquire().await;
        let output = call.send().await.map_err(classify)?;
        let mut interner = Interner::new();
        let tag_map = interner.tags(tags.iter().filter_map(|t| Some((t.key()?, t.value()?))));
        Ok(output
            .instances()
            .iter()
            .filter_map(|i| convert(i, &mut interner))
            .map(|mut instance| {
                // RunInstances may answer without tags; we know what we set.
                if instance.tags.is_empty() {
                    instance.tags = tag_map.clone();
                }
                instance
            })
            .collect())
    }
}

fn tag_filter(key: &str, value: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{key}"))
        .values(value)
        .build()
}

fn live_filter() -> Filter {
    Filter::builder()
        .name("instance-state-name")
        .set_values(Some(LIVE_STATES.iter().map(|s| s.to_string()).collect()))
        .build()
}

/// The deterministic ClientToken of one RunInstances call of a launch step. Real EC2
/// returns the first call's reservation when a retry repeats it; moto ignores it.
fn client_token(launch_token: &str, subnet_index: usize, count: u32, existing: usize) -> String {
    let mut hasher = Sha256::new();
    hasher.update(launch_token.as_bytes());
    hasher.update(format!("\0{subnet_index}\0{count}\0{existing}").as_bytes());
    format!("phx-{}", &hex::encode(hasher.finalize())[..40])
}

/// How many instances each subnet should get for a launch step: `count` spread
/// round-robin over `subnets`, minus what the step already has in each subnet. Instances
/// outside the listed subnets count against the total first.
fn plan_launch(count: u32, subnets: &[Option<String>], existing: &[Instance]) -> Vec<(usize, u32)> {
    let n = subnets.len().max(1);
    let mut want: Vec<u32> = (0..n)
        .map(|i| count / n as u32 + u32::from((i as u32) < count % n as u32))
        .collect();
    let mut strays = 0u32;
    for instance in existing {
        match subnets
            .iter()
            .position(|s| s.as_deref() == instance.subnet_id.as_deref())
        {
            Some(i) if want[i] > 0 => want[i] -= 1,
            _ => strays += 1,
        }
    }
    // Strays (moved, or subnets changed) still count: take them off the largest shares.
    while strays > 0 {
        let Some((i, _)) = want
            .iter()
            .enumerate()
            .filter(|(_, w)| **w > 0)
            .max_by_key(|(i, w)| (**w, std::cmp::Reverse(*i)))
        else {
            break;
        };
        want[i] -= 1;
        strays -= 1;
    }
    want.into_iter()
        .enumerate()
        .filter(|(_, w)| *w > 0)
        .collect()
}

/// The provider-neutral view of an EC2 instance (health `Unknown`; filled in later).
/// Repeated strings and tag sets come from `interner`.
fn convert(i: &aws_sdk_ec2::types::Instance, interner: &mut Interner) -> Option<Instance> {
    let id = Text::from(i.instance_id()?);
    let state = match i.state().and_then(|s| s.name()) {
        Some(InstanceStateName::Pending) => InstanceState::Pending,
        Some(InstanceStateName::Running) => InstanceState::Running,
        Some(InstanceStateName::ShuttingDown) => InstanceState::ShuttingDown,
        Some(InstanceStateName::Stopping) => InstanceState::Stopping,
        Some(InstanceStateName::Stopped) => InstanceState::Stopped,
        Some(InstanceStateName::Terminated) => InstanceState::Terminated,
        // A state this SDK does not know: count it as coming up, so nothing is
        // launched in its place before we understand it.
        _ => InstanceState::Pending,
    };
    let mut security_group_ids: Vec<Text> = i
        .security_groups()
        .iter()
        .filter_map(|g| g.group_id().map(|id| interner.text(id)))
        .collect();
    security_group_ids.sort();
    security_group_ids.dedup();
    Some(Instance {
        id,
        state,
        health: InstanceHealth::Unknown,
        image: interner.text(i.image_id().unwrap_or_default()),
        instance_type: interner.text(i.instance_type().map_or("", |t| t.as_str())),
        subnet_id: i.subnet_id().map(|s| interner.text(s)),
        security_group_ids: security_group_ids.into(),
        launch_time: i.launch_time().and_then(|t| SystemTime::try_from(*t).ok()),
        // EC2 reports a dotted IPv4 address; anything else leaves the probe no target.
        private_ip: i.private_ip_address().and_then(|ip| ip.parse().ok()),
        tags: interner.tags(i.tags().iter().filter_map(|t| Some((t.key()?, t.value()?)))),
    })
}

/// Health from EC2's two status checks.
fn status_health(
    state: Option<&InstanceStateName>,
    instance: Option<&SummaryStatus>,
    system: Option<&SummaryStatus>,
) -> InstanceHealth {
    match state {
        Some(InstanceStateName::Running) => {}
        Some(InstanceStateName::Pending) => return InstanceHealth::Unknown,
        _ => return InstanceHealth::Unhealthy,
    }
    match (instance, system) {
        (Some(SummaryStatus::Impaired), _) | (_, Some(SummaryStatus::Impaired)) => {
            InstanceHealth::Unhealthy
        }
        (Some(SummaryStatus::Ok), Some(SummaryStatus::Ok)) => InstanceHealth::Healthy,
        _ => InstanceHealth::Unknown,
    }
}

/// Health that the instance state alone decides, without status checks.
fn state_health(state: InstanceState) -> Option<InstanceHealth> {
    match state {
        InstanceState::Running => None,
        InstanceState::Pending => Some(InstanceHealth::Unknown),
        _ => Some(InstanceHealth::Unhealthy),
    }
}

#[async_trait]
impl Provider for AwsEc2Provider {
    fn name(&self) -> &str {
        &self.name
    }

    fn type_name(&self) -> &'static str {
        "aws_ec2"
    }

    async fn inventory(&self, owner: &str) -> Inventory {
        let mut inventory = crate::inventory_start(&self.name);
        let (mut instances, error) = self.list_instances(owner).await;
        let mut errors: Vec<String> = error.iter().map(|e| e.to_string()).collect();
        let running: Vec<String> = instances
            .iter()
            .filter(|i| i.state == InstanceState::Running)
            .map(|i| i.id.to_string())
            .collect();
        let health = match self.health(&running).await {
            Ok(health) => health,
            Err(err) => {
                errors.push(err.to_string());
                BTreeMap::new()
            }
        };
        for instance in &mut instances {
            instance.health = state_health(instance.state)
                .or_else(|| health.get(instance.id.as_str()).copied())
                .unwrap_or(InstanceHealth::Unknown);
        }
        inventory.instances = instances;
        if !errors.is_empty() {
            inventory.complete = false;
            inventory.error = Some(errors.join("; "));
        }
        inventory
    }

    async fn launch(&self, request: &LaunchRequest) -> Result<Vec<Instance>, ProviderError> {
        let tags: Vec<Tag> = request
            .tags()
            .into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        let subnets: Vec<Option<String>> = if request.template.subnet_ids.is_empty() {
            vec![None]
        } else {
            request
                .template
                .subnet_ids
                .iter()
                .map(|s| Some(s.to_string()))
                .collect()
        };
        let mut backoff = self.backoff();
        let mut attempt = 1;
        loop {
            // Always look first: a previous attempt (or a previous process) may have
            // launched some or all of this step already.
            let mut have = self
                .find_by_launch_token(&request.owner, &request.launch_token)
                .await?;
            let plan = plan_launch(request.count, &subnets, &have);
            let existing = have.len();
            let mut failed = None;
            for (subnet_index, count) in plan {
                let token = client_token(&request.launch_token, subnet_index, count, existing);
                let subnet = subnets[subnet_index].as_deref();
                match self.run_once(request, &tags, subnet, count, token).await {
                    Ok(new) => have.extend(new),
                    Err(err) => {
                        failed = Some(err);
                        break;
                    }
                }
            }
            match failed {
                None => return Ok(have),
                Some(err) if err.is_retryable() && attempt < self.max_attempts => {
                    let delay = backoff.next().expect("backoff never ends");
                    tracing::warn!(provider = %self.name, attempt, ?delay, error = ?err, "RunInstances failed, re-checking the launch token before retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Some(err) => return Err(self.fail("RunInstances", (err, attempt))),
            }
        }
    }

    async fn terminate(&self, ids: &[String]) -> Result<(), ProviderError> {
        for batch in ids.chunks(TERMINATE_BATCH) {
            retry(self.max_attempts, self.backoff(), |_| {
                let call = self
                    .client
                    .terminate_instances()
                    .set_instance_ids(Some(batch.to_vec()));
                async move {
                    self.budgets.mutate.acquire().await;
                    call.send().await.map_err(classify)
                }
            })
            .await
            .map_err(|err| self.fail_with_ids("TerminateInstances", err, batch))?;
        }
        Ok(())
    }

    async fn health(
        &self,
        ids: &[String],
    ) -> Result<BTreeMap<String, InstanceHealth>, ProviderError> {
        let mut out: BTreeMap<String, InstanceHealth> = ids
            .iter()
            .map(|id| (id.clone(), InstanceHealth::Unknown))
            .collect();
        for batch in ids.chunks(STATUS_BATCH) {
            let mut token: Option<String> = None;
            loop {
                let page = retry(self.max_attempts, self.backoff(), |_| {
                    let call = self
                        .client
                        .describe_instance_status()
                        .set_instance_ids(Some(batch.to_vec()))
                        .include_all_instances(true)
                        .set_next_token(token.clone());
                    async move {
                        self.budgets.describe.acquire().await;
                        call.send().await.map_err(classify)
                    }
                })
                .await
                .map_err(|err| self.fail_with_ids("DescribeInstanceStatus", err, batch))?;
                for status in page.instance_statuses() {
                    let Some(id) = status.instance_id() else {
                        continue;
                    };
                    let health = status_health(
                        status.instance_state().and_then(|s| s.name()),
                        status.instance_status().and_then(|s| s.status()),
                        status.system_status().and_then(|s| s.status()),
                    );
                    out.insert(id.to_string(), health);
                }
                match page.next_token().filter(|t| !t.is_empty()) {
                    Some(next) if token.as_deref() != Some(next) => token = Some(next.to_string()),
                    _ => break,
                }
            }
        }
        Ok(out)
    }

    async fn register_targets(
        &self,
        target_group: &str,
        targets: &[TargetRef],
    ) -> Result<(), ProviderError> {
        self.elb_register(target_group, targets).await
    }

    async fn deregister_targets(
        &self,
        target_group: &str,
        targets: &[TargetRef],
    ) -> Result<(), ProviderError> {
        self.elb_deregister(target_group, targets).await
    }

    async fn target_health(
        &self,
        target_group: &str,
    ) -> Result<Vec<phoenix_core::traffic::Target>, ProviderError> {
        self.elb_target_health(target_group).await
    }

    async fn target_group_info(
        &self,
        target_group: &str,
    ) -> Result<TargetGroupInfo, ProviderError> {
        self.elb_target_group_info(target_group).await
    }

    async fn find_by_launch_token(
        &self,
        owner: &str,
        token: &str,
    ) -> Result<Vec<Instance>, ProviderError> {
        let filters = vec![
            tag_filter(tags::OWNER, owner),
            tag_filter(tags::LAUNCH_TOKEN, token),
            live_filter(),
        ];
        match self.describe_all(filters).await {
            (instances, None) => Ok(instances),
            (_, Some(err)) => Err(err),
        }
    }

    async fn describe_images(
        &self,
        ids: &[String],
    ) -> Result<BTreeMap<String, ImageLookup>, ProviderError> {
        let (mut out, misses) = self.images.split(ids, crate::IMAGE_CACHE_TTL);
        if misses.is_empty() {
            return Ok(out);
        }
        // An `image-id` filter, not `ImageIds`: an unknown id then is simply absent
        // instead of failing the whole call with InvalidAMIID.NotFound.
        let mut fresh: BTreeMap<String, ImageLookup> = misses
            .iter()
            .map(|id| (id.clone(), ImageLookup::NotFound))
            .collect();
        for batch in misses.chunks(IMAGE_BATCH) {
            let mut token: Option<String> = None;
            loop {
                let page = retry(self.max_attempts, self.backoff(), |_| {
                    let call = self
                        .client
                        .describe_images()
                        .filters(
                            Filter::builder()
                                .name("image-id")
                                .set_values(Some(batch.to_vec()))
                                .build(),
                        )
                        .include_deprecated(true)
                        .set_next_token(token.clone());
                    async move {
                        self.budgets.describe.acquire().await;
                        call.send().await.map_err(classify)
                    }
                })
                .await
                .map_err(|err| self.fail_with_ids("DescribeImages", err, batch))?;
                for image in page.images() {
                    if let Some(id) = image.image_id() {
                        fresh.insert(id.to_string(), ImageLookup::Found(image_info(image)));
                    }
                }
                match page.next_token().filter(|t| !t.is_empty()) {
                    Some(next) if token.as_deref() != Some(next) => token = Some(next.to_string()),
                    _ => break,
                }
            }
        }
        self.images.store(&fresh);
        out.extend(fresh);
        Ok(out)
    }
}

/// Most image ids per DescribeImages filter.
const IMAGE_BATCH: usize = 200;

/// An EC2 image in the provider-neutral terms `policy.images` checks.
fn image_info(image: &aws_sdk_ec2::types::Image) -> ImageInfo {
    let time = |text: Option<&str>| {
        text.and_then(|t| {
            phoenix_core::time::parse_rfc3339_lenient(
                t.trim_end_matches('Z').split('.').next().unwrap_or(t),
            )
            .ok()
        })
    };
    ImageInfo {
        id: image.image_id().unwrap_or_default().to_string(),
        owner: image.owner_id().map(str::to_string),
        name: image.name().map(str::to_string),
        tags: image
            .tags()
            .iter()
            .filter_map(|t| {
                Some((
                    t.key()?.to_string(),
                    t.value().unwrap_or_default().to_string(),
                ))
            })
            .collect(),
        created: time(image.creation_date()),
        deprecated_at: time(image.deprecation_time()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use phoenix_core::model::Tags;

    use super::*;

    fn inst(subnet: Option<&str>) -> Instance {
        Instance {
            id: "i-1".into(),
            state: InstanceState::Running,
            health: InstanceHealth::Unknown,
            image: "ami-1".into(),
            instance_type: "t3.micro".into(),
            subnet_id: subnet.map(Text::from),
            security_group_ids: Arc::from([]),
            launch_time: None,
            private_ip: None,
            tags: Tags::new(),
        }
    }

    #[test]
    fn launch_plan_spreads_over_subnets_and_subtracts_what_exists() {
        let subnets = vec![
            Some("a".to_string()),
            Some("b".to_string()),
            Some("c".to_string()),
        ];
        assert_eq!(plan_launch(5, &subnets, &[]), vec![(0, 2), (1, 2), (2, 1)]);
        let existing = vec![inst(Some("a")), inst(Some("a")), inst(Some("c"))];
        assert_eq!(plan_launch(5, &subnets, &existing), vec![(1, 2)]);
        let stray = vec![inst(Some("zzz"))];
        assert_eq!(plan_launch(3, &subnets, &stray), vec![(1, 1), (2, 1)]);
        assert_eq!(plan_launch(2, &[None], &[inst(None), inst(None)]), vec![]);
    }

    #[test]
    fn client_tokens_are_deterministic_short_and_distinct() {
        let a = client_token("plan-1/step-2/attempt-0", 0, 3, 0);
        assert_eq!(a, client_token("plan-1/step-2/attempt-0", 0, 3, 0));
        assert!(a.len() <= 64);
        assert_ne!(a, client_token("plan-1/step-2/attempt-0", 1, 3, 0));
        assert_ne!(a, client_token("plan-1/step-2/attempt-0", 0, 2, 1));
    }

    #[test]
    fn error_codes_map_to_kinds() {
        let kind = |status, code: &str| match classify_code(status, code.to_string(), String::new())
        {
            AttemptError::Throttled { .. } => "throttled",
            AttemptError::Server { .. } => "server",
            AttemptError::Transport(_) => "transport",
            AttemptError::Auth { .. } => "auth",
            AttemptError::NotFound => "not-found",
            AttemptError::Capacity { .. } => "capacity",
            AttemptError::Client { .. } => "client",
        };
        assert_eq!(kind(503, "RequestLimitExceeded"), "throttled");
        assert_eq!(kind(400, "RequestLimitExceeded"), "throttled");
        assert_eq!(kind(503, ""), "throttled");
        assert_eq!(kind(500, "InternalError"), "server");
        assert_eq!(kind(502, ""), "server");
        assert_eq!(kind(401, "AuthFailure"), "auth");
        assert_eq!(kind(400, "InvalidInstanceID.NotFound"), "not-found");
        assert_eq!(kind(500, "InsufficientInstanceCapacity"), "capacity");
        assert_eq!(kind(400, "InvalidAMIID.Malformed"), "client");
    }

    #[test]
    fn health_from_status_checks() {
        use InstanceStateName as S;
        use SummaryStatus as St;
        assert_eq!(
            status_health(Some(&S::Running), Some(&St::Ok), Some(&St::Ok)),
            InstanceHealth::Healthy
        );
        assert_eq!(
            status_health(Some(&S::Running), Some(&St::Impaired), Some(&St::Ok)),
            InstanceHealth::Unhealthy
        );
        assert_eq!(
            status_health(Some(&S::Running), Some(&St::Initializing), Some(&St::Ok)),
            InstanceHealth::Unknown
        );
        assert_eq!(
            status_health(Some(&S::Pending), None, None),
            InstanceHealth::Unknown
        );
        assert_eq!(
            status_health(Some(&S::Stopped), None, None),
            InstanceHealth::Unhealthy
        );
    }
}
