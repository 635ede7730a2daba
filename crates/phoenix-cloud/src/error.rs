//! Provider errors: one `thiserror` enum whose variants say what kind of failure it was
//! (throttled, server, auth, client, ...), so callers decide by variant, never by text.

use std::path::PathBuf;

/// The broad class of a provider failure, for retry and alerting decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The cloud asked us to slow down (`RequestLimitExceeded`, HTTP 503).
    Throttled,
    /// The cloud failed on its side (HTTP 5xx).
    Server,
    /// The endpoint could not be reached or did not answer in time.
    Transport,
    /// Credentials are missing, invalid or not allowed to do this.
    Auth,
    /// The request was refused as invalid (bad AMI, bad subnet, ...). Retrying is useless.
    Client,
    /// An instance id is unknown to the cloud.
    NotFound,
    /// The cloud has no capacity for the launch right now.
    Capacity,
    /// Local state (the sim's files) could not be read or written.
    Storage,
    /// The provider configuration is unusable.
    Config,
}

impl ErrorKind {
    /// Whether the same call may succeed if simply tried again after a pause.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorKind::Throttled | ErrorKind::Server | ErrorKind::Transport
        )
    }
}

/// Why a provider call failed. Every variant names the provider and the operation.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Throttled on every attempt.
    #[error("provider `{provider}`: {operation} throttled ({code}) on all {attempts} attempts")]
    Throttled {
        /// Provider name.
        provider: String,
        /// API operation, e.g. `RunInstances`.
        operation: &'static str,
        /// Error code the cloud returned.
        code: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The cloud kept failing on its side.
    #[error(
        "provider `{provider}`: {operation} failed on the server side (HTTP {status}, {code}: {message}) on all {attempts} attempts"
    )]
    Server {
        /// Provider name.
        provider: String,
        /// API operation.
        operation: &'static str,
        /// HTTP status.
        status: u16,
        /// Error code, when the body had one.
        code: String,
        /// Error message, when the body had one.
        message: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The endpoint could not be reached, or the answer could not be read.
    #[error(
        "provider `{provider}`: {operation} could not reach the endpoint ({attempts} attempts)"
    )]
    Transport {
        /// Provider name.
        provider: String,
        /// API operation.
        operation: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The underlying failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Credentials missing, invalid or not permitted.
    #[error("provider `{provider}`: {operation} was not authorised ({code}: {message})")]
    Auth {
        /// Provider name.
        provider: String,
        /// API operation.
        operation: &'static str,
        /// Error code.
        code: String,
        /// Error message.
        message: String,
    },
    /// The request was refused as invalid.
    #[error("provider `{provider}`: {operation} was rejected ({code}: {message})")]
    Client {
        /// Provider name.
        provider: String,
        /// API operation.
        operation: &'static str,
        /// Error code.
        code: String,
        /// Error message.
        message: String,
    },
    /// One or more instance ids are unknown.
    #[error("provider `{provider}`: {operation} found no instance {ids:?}")]
    NotFound {
        /// Provider name.
        provider: String,
        /// API operation.
        operation: &'static str,
        /// The ids asked for (the whole batch when the cloud does not say which).
        ids: Vec<String>,
    },
    /// No capacity for the launch.
    #[error("provider `{provider}`: {operation} found no capacity ({message})")]
    Capacity {
        /// Provider name.
        provider: String,
        /// API operation.
        operation: &'static str,
        /// What the cloud said.
        message: String,
    },
    /// The cloud's answer lacked something it always carries.
    #[error("provider `{provider}`: {operation} returned a malformed answer: {what}")]
    Malformed {
        /// Provider name.
        provider: String,
        /// API operation.
        operation: &'static str,
        /// What was missing or wrong.
        what: String,
    },
    /// The sim's files could not be read or written.
    #[error("provider `{provider}`: sim state at {}", path.display())]
    Storage {
        /// Provider name.
        provider: String,
        /// File involved.
        path: PathBuf,
        /// The IO failure.
        #[source]
        source: std::io::Error,
    },
    /// The sim's files are not in the expected format.
    #[error("provider `{provider}`: sim state at {} is corrupt: {what}", path.display())]
    Corrupt {
        /// Provider name.
        provider: String,
        /// File involved.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A load balancer target group is unknown.
    #[error("provider `{provider}`: {operation} found no target group `{target_group}`")]
    TargetGroupNotFound {
        /// Provider name.
        provider: String,
        /// API operation.
        operation: &'static str,
        /// The target group asked for.
        target_group: String,
    },
    /// The provider configuration is unusable.
    #[error("provider `{provider}`: invalid configuration: {reason}")]
    Config {
        /// Provider name.
        provider: String,
        /// What is wrong.
        reason: String,
    },
}

impl ProviderError {
    /// The class of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ProviderError::Throttled { .. } => ErrorKind::Throttled,
            ProviderError::Server { .. } => ErrorKind::Server,
            ProviderError::Transport { .. } => ErrorKind::Transport,
            ProviderError::Auth { .. } => ErrorKind::Auth,
            ProviderError::Client { .. }
            | ProviderError::Malformed { .. }
            | ProviderError::TargetGroupNotFound { .. } => ErrorKind::Client,
            ProviderError::NotFound { .. } => ErrorKind::NotFound,
            ProviderError::Capacity { .. } => ErrorKind::Capacity,
            ProviderError::Storage { .. } | ProviderError::Corrupt { .. } => ErrorKind::Storage,
            ProviderError::Config { .. } => ErrorKind::Config,
        }
    }

    /// Whether the call may succeed if tried again later (after this provider's own
    /// retries were used up).
    pub fn is_transient(&self) -> bool {
        self.kind().is_transient() || self.kind() == ErrorKind::Capacity
    }
}
