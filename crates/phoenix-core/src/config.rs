//! The daemon configuration schema (design section 7): raw serde structs with
//! `deny_unknown_fields` and documented defaults, then a pure [`Config::validate`] that
//! reports every problem at once. Effectful checks (can the port be bound, is the
//! environment variable set) happen later, in the binary.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::yaml;

/// The whole daemon configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Written as `phoenix:owner` on every instance; scopes inventory.
    pub owner: String,
    /// Where desired state comes from.
    pub source: SourceConfig,
    /// The clouds groups can run on, by name.
    pub providers: Vec<ProviderConfig>,
    /// How reconciliation behaves.
    #[serde(default)]
    pub reconcile: ReconcileConfig,
    /// Where durable state lives.
    #[serde(default)]
    pub state: StateConfig,
    /// The HTTP API.
    #[serde(default)]
    pub server: ServerConfig,
    /// Incoming push webhooks.
    #[serde(default)]
    pub webhooks: WebhooksConfig,
    /// Alert receivers.
    #[serde(default)]
    pub alerts: Vec<AlertConfig>,
    /// Fleet policy: which images may be launched (design section 12).
    #[serde(default)]
    pub policy: crate::policy::PolicyConfig,
}

/// `source`: exactly one of `git` or `dir`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceConfig {
    /// A Git repository.
    Git(GitSourceConfig),
    /// A local folder.
    Dir(DirSourceConfig),
}

/// `source.git`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GitSourceConfig {
    /// `https://`, `http://`, `ssh://`, `git://` or `file://` URL (or scp-like `user@host:path`).
    pub url: String,
    /// Branch to follow. Default `main` unless `ref` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// A full ref (`refs/tags/v3`) or a commit id to pin, instead of `branch`.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Folder of desired-state files inside the repository. Default: the root.
    #[serde(default)]
    pub path: String,
    /// Poll interval (jittered). Default 30s.
    #[serde(default = "default_git_interval", with = "crate::duration")]
    pub interval: Duration,
    /// Credentials.
    #[serde(default)]
    pub auth: GitAuthConfig,
    /// Commit signature verification (design section 12). Absent: commits are not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<Box<GitVerifyConfig>>,
}

/// `source.git.verify`: which commits must carry a signature by a trusted key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GitVerifyConfig {
    /// `head` (default): the new head commit; `all`: every commit since the last
    /// accepted one.
    #[serde(default)]
    pub mode: VerifyMode,
    /// ssh-keygen ALLOWED SIGNERS file (SSH signatures, namespace `git`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_signers: Option<PathBuf>,
    /// Armored OpenPGP public keys (subkeys included) trusted to sign commits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openpgp_keys: Option<PathBuf>,
}

/// `source.git.verify.mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyMode {
    /// Only the commit a revision is taken from.
    #[default]
    Head,
    /// Every commit between the last accepted one and the new head (after a
    /// force-push: every commit not reachable from the last accepted one).
    All,
}

fn default_git_interval() -> Duration {
    Duration::from_secs(30)
}

/// `source.git.auth`. Secrets are only ever read from files or the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GitAuthConfig {
    /// Private key file for `ssh://` URLs. Without it the SSH agent is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key_file: Option<PathBuf>,
    /// Environment variable holding an HTTPS token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// User name sent with the token. Default `git`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

/// `source.dir`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DirSourceConfig {
    /// The folder (relative paths are relative to the config file).
    pub path: PathBuf,
    /// React to file changes at once. Default true.
    #[serde(default = "default_true")]
    pub watch: bool,
    /// Full rescan interval, the backstop for lost watch events. Default 30s.
    #[serde(default = "default_git_interval", with = "crate::duration")]
    pub interval: Duration,
}

fn default_true() -> bool {
    true
}

/// One entry of `providers`, chosen by `type`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProviderConfig {
    /// AWS EC2 through the official SDK.
    AwsEc2(AwsEc2Config),
    /// The built-in simulated cloud.
    Sim(SimConfig),
}

impl ProviderConfig {
    /// The provider's name, as groups refer to it in `spec.provider`.
    pub fn name(&self) -> &str {
        match self {
            ProviderConfig::AwsEc2(c) => &c.name,
            ProviderConfig::Sim(c) => &c.name,
        }
    }

    /// The config `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            ProviderConfig::AwsEc2(_) => "aws_ec2",
            ProviderConfig::Sim(_) => "sim",
        }
    }
}

/// `type: aws_ec2`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AwsEc2Config {
    /// Provider name.
    pub name: String,
    /// Region; default from the standard AWS chain (`AWS_REGION`, profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Endpoint override (moto, LocalStack, VPC endpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// Named profile from `~/.aws/config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Sustained RunInstances calls per second (AWS's token bucket refills at 2/s).
    #[serde(default = "default_run_rate")]
    pub run_instances_per_second: f64,
    /// Sustained describe calls per second (AWS's token bucket refills at 20/s).
    #[serde(default = "default_describe_rate")]
    pub describe_per_second: f64,
    /// Sustained mutating calls per second other than RunInstances (e.g. terminate).
    #[serde(default = "default_mutate_rate")]
    pub mutate_per_second: f64,
    /// Attempts per call on throttling and 5xx, including the first.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

fn default_run_rate() -> f64 {
    2.0
}
fn default_describe_rate() -> f64 {
    20.0
}
fn default_mutate_rate() -> f64 {
    5.0
}
fn default_max_attempts() -> u32 {
    5
}

/// `type: sim`: the built-in simulated cloud, persisted in the state directory.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// Provider name.
    pub name: String,
    /// Time from launch until an instance is running. Default 0s.
    #[serde(default, with = "crate::duration")]
    pub launch_latency: Duration,
    /// Fraction of launches that fail, 0.0 to 1.0. Default 0.
    #[serde(default)]
    pub launch_failure_rate: f64,
    /// Instances of these images never become healthy.
    #[serde(default)]
    pub unhealthy_images: Vec<String>,
    /// Registered images (id, owner, name, tags, created, deprecated_at) the sim
    /// describes for `policy.images`; any other image id is unknown to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<crate::policy::ImageInfo>,
    /// Load balancer target groups the sim models (design section 11). Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_groups: Vec<SimTargetGroup>,
}

/// One target group of the sim: targets are `initial` for `registration_delay` after
/// they are registered, then `healthy` (or `unhealthy` for ever, when the instance runs
/// one of `unhealthy_images`); deregistered targets are `draining` for
/// `deregistration_delay`, then gone (`unused`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SimTargetGroup {
    /// The name specs put in `spec.traffic.targetGroups` (an ARN, or any name).
    pub name: String,
    /// The target group's own port. Default 80.
    #[serde(default = "default_sim_target_port")]
    pub port: u16,
    /// Time from registration until a target is healthy. Default 0s.
    #[serde(default, with = "crate::duration")]
    pub registration_delay: Duration,
    /// Time a deregistered target drains. Default 300s (ELBv2's default).
    #[serde(default = "default_deregistration_delay", with = "crate::duration")]
    pub deregistration_delay: Duration,
    /// Targets running these images never become healthy in this target group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unhealthy_images: Vec<String>,
}

impl SimTargetGroup {
    /// A target group of that name with the defaults.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_string(),
            port: default_sim_target_port(),
            registration_delay: Duration::ZERO,
            deregistration_delay: default_deregistration_delay(),
            unhealthy_images: Vec::new(),
        }
    }
}

/// `providers[i].target_groups` of a sim: names non-empty and unique, ports not 0.
fn sim_target_group_problems(i: usize, groups: &[SimTargetGroup]) -> Vec<ConfigError> {
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    for (j, tg) in groups.iter().enumerate() {
        let at = |field: &str| format!("providers[{i}].target_groups[{j}].{field}");
        if tg.name.is_empty() {
            problems.push(ConfigError::field(&at("name"), "must not be empty"));
        } else if !names.insert(tg.name.as_str()) {
            problems.push(ConfigError::field(
                &at("name"),
                format!("`{}` is used by more than one target group", tg.name),
            ));
        }
        if tg.port == 0 {
            problems.push(ConfigError::field(&at("port"), "must be 1 to 65535"));
        }
    }
    problems
}

fn default_sim_target_port() -> u16 {
    80
}

fn default_deregistration_delay() -> Duration {
    Duration::from_secs(300)
}

/// Whether the daemon acts on what it finds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Detect, plan and alert, but never act. The safe default.
    #[default]
    Observe,
    /// Execute plans.
    Enforce,
}

/// `reconcile`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileConfig {
    /// Full pass interval (jittered). Default 1m.
    #[serde(default = "default_reconcile_interval", with = "crate::duration")]
    pub interval: Duration,
    /// observe (default) or enforce.
    #[serde(default)]
    pub mode: Mode,
    /// Most instances replaced or terminated per cycle, across all groups. Default 10.
    #[serde(default = "default_max_replacements")]
    pub max_replacements: u32,
    /// Most replaced per cycle as a fraction of the fleet, 0.0 to 1.0. Default 0.25.
    #[serde(default = "default_max_replacement_fraction")]
    pub max_replacement_fraction: f64,
    /// Terminate orphaned instances (group gone from Git). Default false.
    #[serde(default)]
    pub prune: bool,
    /// A revision removing more than this fraction of groups is held for approval. Default 0.5.
    #[serde(default = "default_max_prune_fraction")]
    pub max_prune_fraction: f64,
    /// Change windows (design section 14; `crate::window`). Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<crate::window::WindowConfig>,
}

fn default_reconcile_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_max_replacements() -> u32 {
    10
}
fn default_max_replacement_fraction() -> f64 {
    0.25
}
fn default_max_prune_fraction() -> f64 {
    0.5
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            interval: default_reconcile_interval(),
            mode: Mode::default(),
            max_replacements: default_max_replacements(),
            max_replacement_fraction: default_max_replacement_fraction(),
            prune: false,
            max_prune_fraction: default_max_prune_fraction(),
            windows: Vec::new(),
        }
    }
}

/// `state`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Folder for the SQLite store, the Git cache and the sim cloud. Default `./phoenix-state`
    /// (relative to the config file's folder).
    #[serde(default = "default_state_path")]
    pub path: PathBuf,
    /// How long finished state is kept (design section 16).
    #[serde(default)]
    pub retention: RetentionConfig,
}

fn default_state_path() -> PathBuf {
    PathBuf::from("./phoenix-state")
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            path: default_state_path(),
            retention: RetentionConfig::default(),
        }
    }
}

/// `state.retention`: how long finished records are kept before they are pruned, so the
/// database stays bounded under continuous commits (design section 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Finished plans and their steps. Default 30d.
    #[serde(default = "default_retention_long", with = "crate::duration")]
    pub plans: Duration,
    /// Revisions last seen this long ago (the one in force and the newest stay). Default 30d.
    #[serde(default = "default_retention_long", with = "crate::duration")]
    pub revisions: Duration,
    /// Delivered or expired alerts. Default 7d.
    #[serde(default = "default_retention_alerts", with = "crate::duration")]
    pub alerts: Duration,
    /// Resolved incidents. Default 30d.
    #[serde(default = "default_retention_long", with = "crate::duration")]
    pub incidents: Duration,
}

fn default_retention_long() -> Duration {
    Duration::from_secs(30 * 86_400)
}

fn default_retention_alerts() -> Duration {
    Duration::from_secs(7 * 86_400)
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            plans: default_retention_long(),
            revisions: default_retention_long(),
            alerts: default_retention_alerts(),
            incidents: default_retention_long(),
        }
    }
}

/// `server`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Listen address. Default `127.0.0.1:8080`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Environment variable holding the bearer token for mutating endpoints.
    /// Without it, mutating endpoints are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// Longest wait for a request's headers. Default 10s.
    #[serde(default = "default_header_read_timeout", with = "crate::duration")]
    pub header_read_timeout: Duration,
    /// Longest time a request may take (not the event stream). Default 30s.
    #[serde(default = "default_request_timeout", with = "crate::duration")]
    pub request_timeout: Duration,
    /// Most connections served at once; past it 503 (`/healthz` still answers). Default 256.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Most `GET /api/v1/events` streams open at once; past it 503. Default 64.
    #[serde(default = "default_max_sse_subscribers")]
    pub max_sse_subscribers: usize,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_max_connections() -> usize {
    256
}

fn default_max_sse_subscribers() -> usize {
    64
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            token_env: None,
            header_read_timeout: default_header_read_timeout(),
            request_timeout: default_request_timeout(),
            max_connections: default_max_connections(),
            max_sse_subscribers: default_max_sse_subscribers(),
        }
    }
}

/// `webhooks`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Incoming Git push webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitWebhookConfig>,
}

/// `webhooks.git`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GitWebhookConfig {
    /// Environment variable holding the shared secret.
    pub secret_env: String,
}

/// The kind of alert receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertType {
    /// Signed generic JSON.
    Webhook,
    /// Slack incoming webhook.
    Slack,
    /// Alertmanager `POST /api/v2/alerts`.
    Alertmanager,
}

/// Alert events (design section 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertEvent {
    /// A group diverged from Git.
    DriftDetected,
    /// The divergence is gone.
    DriftResolved,
    /// A plan started.
    PlanStarted,
    /// A plan finished.
    PlanSucceeded,
    /// A plan failed.
    PlanFailed,
    /// A failed generation was rolled back.
    Rollback,
    /// The newest revision was rejected or the source is unreachable.
    SourceError,
    /// The source is healthy again.
    SourceRecovered,
    /// A group names an image that breaks `policy.images` (once per group and image).
    PolicyViolation,
    /// An operator lifted every change window (`POST /api/v1/windows/override`; once per
    /// override).
    WindowOverride,
}

impl AlertEvent {
    /// Every event, in documentation order.
    pub const ALL: [AlertEvent; 10] = [
        AlertEvent::DriftDetected,
        AlertEvent::DriftResolved,
        AlertEvent::PlanStarted,
        AlertEvent::PlanSucceeded,
        AlertEvent::PlanFailed,
        AlertEvent::Rollback,
        AlertEvent::SourceError,
        AlertEvent::SourceRecovered,
        AlertEvent::PolicyViolation,
        AlertEvent::WindowOverride,
    ];

    /// The event's one name: in config (`events:`), in the store's outbox, on the wire
    /// (`X-Phoenix-Event`, the body's `event`) and in logs. Serde uses the same
    /// (`snake_case`; a test keeps them equal).
    pub const fn as_str(self) -> &'static str {
        match self {
            AlertEvent::DriftDetected => "drift_detected",
            AlertEvent::DriftResolved => "drift_resolved",
            AlertEvent::PlanStarted => "plan_started",
            AlertEvent::PlanSucceeded => "plan_succeeded",
            AlertEvent::PlanFailed => "plan_failed",
            AlertEvent::Rollback => "rollback",
            AlertEvent::SourceError => "source_error",
            AlertEvent::SourceRecovered => "source_recovered",
            AlertEvent::PolicyViolation => "policy_violation",
            AlertEvent::WindowOverride => "window_override",
        }
    }
}

/// One entry of `alerts`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    /// Receiver name.
    pub name: String,
    /// webhook, slack or alertmanager.
    #[serde(rename = "type")]
    pub kind: AlertType,
    /// Where to send.
    pub url: String,
    /// Environment variable holding the HMAC secret (webhook type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// Events this receiver wants. Default: all.
    #[serde(default = "all_events")]
    pub events: Vec<AlertEvent>,
    /// Re-notify still-open incidents this often. Default 4h.
    #[serde(default = "default_renotify", with = "crate::duration")]
    pub renotify: Duration,
    /// Give up on an undelivered alert after this long. Default 24h.
    #[serde(default = "default_expire", with = "crate::duration")]
    pub expire_after: Duration,
}

fn all_events() -> Vec<AlertEvent> {
    AlertEvent::ALL.to_vec()
}
fn default_renotify() -> Duration {
    Duration::from_secs(4 * 3600)
}
fn default_expire() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// One problem found in a config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// 1-based column, when known.
    pub column: Option<u64>,
    /// What is wrong; semantic problems start with the field path.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{l}:{c}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl ConfigError {
    fn field(path: &str, message: impl fmt::Display) -> Self {
        Self {
            line: None,
            column: None,
            message: format!("{path}: {message}"),
        }
    }
}

impl Config {
    /// Parse and validate a config document; returns every problem found.
    pub fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
        let config: Config = yaml::from_str(text).map_err(|err: yaml::YamlError| {
            vec![ConfigError {
                line: err.line,
                column: err.column,
                message: err.message,
            }]
        })?;
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems)
        }
    }

    /// Make relative paths relative to `base` (the config file's folder), as Prometheus
    /// does, so the daemon behaves the same whatever its working directory.
    pub fn resolve_paths(&mut self, base: &std::path::Path) {
        let resolve = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        };
        resolve(&mut self.state.path);
        match &mut self.source {
            SourceConfig::Dir(dir) => resolve(&mut dir.path),
            SourceConfig::Git(git) => {
                if let Some(key) = &mut git.auth.ssh_key_file {
                    resolve(key);
                }
                if let Some(verify) = &mut git.verify {
                    verify.allowed_signers.iter_mut().for_each(resolve);
                    verify.openpgp_keys.iter_mut().for_each(resolve);
                }
            }
        }
    }

    /// Pure checks across fields. An empty list means the config is usable.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        if self.owner.is_empty() || self.owner.len() > 128 {
            problems.push(ConfigError::field("owner", "must be 1 to 128 characters"));
        }
        if let Some(bad) = self.owner.chars().find(|c| matches!(c, '*' | '?' | '\\')) {
            // EC2 tag filters treat these as wildcards: `acme-*` would claim (and
            // terminate) every other owner's instances (issue 17).
            problems.push(ConfigError::field(
                "owner",
                format!("must not contain `{bad}` (a wildcard in EC2 tag filters)"),
            ));
        }
        if self.providers.is_empty() {
            problems.push(ConfigError::field(
                "providers",
                "at least one provider is required",
            ));
        }
        let mut names = BTreeSet::new();
        for (i, provider) in self.providers.iter().enumerate() {
            let name = provider.name();
            if name.is_empty() {
                problems.push(ConfigError::field(
                    &format!("providers[{i}].name"),
                    "must not be empty",
                ));
            } else if !names.insert(name) {
                problems.push(ConfigError::field(
                    &format!("providers[{i}].name"),
                    format!("`{name}` is used by more than one provider"),
                ));
            }
            match provider {
                ProviderConfig::AwsEc2(aws) => {
                    for (field, rate) in [
                        ("run_instances_per_second", aws.run_instances_per_second),
                        ("describe_per_second", aws.describe_per_second),
                        ("mutate_per_second", aws.mutate_per_second),
                    ] {
                        if !(rate.is_finite() && rate > 0.0) {
                            problems.push(ConfigError::field(
                                &format!("providers[{i}].{field}"),
                                "must be a positive number",
                            ));
                        }
                    }
                    if aws.max_attempts == 0 {
                        problems.push(ConfigError::field(
                            &format!("providers[{i}].max_attempts"),
                            "must be at least 1",
                        ));
                    }
                }
                ProviderConfig::Sim(sim) => {
                    if !(0.0..=1.0).contains(&sim.launch_failure_rate) {
                        problems.push(ConfigError::field(
                            &format!("providers[{i}].launch_failure_rate"),
                            "must be between 0.0 and 1.0",
                        ));
                    }
                    problems.extend(sim_target_group_problems(i, &sim.target_groups));
                }
            }
        }
        if let SourceConfig::Git(git) = &self.source {
            if git.url.is_empty() {
                problems.push(ConfigError::field("source.git.url", "must not be empty"));
            }
            if git.branch.is_some() && git.reference.is_some() {
                problems.push(ConfigError::field(
                    "source.git",
                    "set `branch` or `ref`, not both",
                ));
            }
            if git.interval.is_zero() {
                problems.push(ConfigError::field(
                    "source.git.interval",
                    "must be greater than 0s",
                ));
            }
            if let Some(verify) = &git.verify
                && verify.allowed_signers.is_none()
                && verify.openpgp_keys.is_none()
            {
                problems.push(ConfigError::field(
                    "source.git.verify",
                    "name `allowed_signers`, `openpgp_keys` or both: without a trusted key every commit would be rejected",
                ));
            }
        }
        let reconcile = &self.reconcile;
        problems.extend(
            crate::window::validate(&reconcile.windows)
                .into_iter()
                .map(|e| ConfigError {
                    line: None,
                    column: None,
                    message: e.to_string(),
                }),
        );
        if reconcile.interval.is_zero() {
            problems.push(ConfigError::field(
                "reconcile.interval",
                "must be greater than 0s",
            ));
        }
        for (field, value) in [
            (
                "reconcile.max_replacement_fraction",
                reconcile.max_replacement_fraction,
            ),
            ("reconcile.max_prune_fraction", reconcile.max_prune_fraction),
        ] {
            if !(0.0..=1.0).contains(&value) {
                problems.push(ConfigError::field(field, "must be between 0.0 and 1.0"));
            }
        }
        let mut alert_names = BTreeSet::new();
        for (i, alert) in self.alerts.iter().enumerate() {
            if !alert_names.insert(alert.name.as_str()) {
                problems.push(ConfigError::field(
                    &format!("alerts[{i}].name"),
                    format!("`{}` is used by more than one receiver", alert.name),
                ));
            }
            if !(alert.url.starts_with("http://") || alert.url.starts_with("https://")) {
                problems.push(ConfigError::field(
                    &format!("alerts[{i}].url"),
                    "must be an http:// or https:// URL",
                ));
            }
        }
        problems
    }

    /// The provider config a group names, if any.
    pub fn provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.name() == name)
    }
}
