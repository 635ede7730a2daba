//! [`SourceError`]: everything that can stop a poll from producing an outcome, each
//! variant carrying its context (URL, ref, path). Invalid desired-state files are not
//! errors: they reject a revision ([`crate::Rejection`]).

use std::path::PathBuf;

use crate::RevisionId;

/// Why a poll failed. The last good revision stays in force; poll again after
/// [`crate::PollSchedule::next_delay`].
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The remote could not be reached (DNS, connection refused, timeout, TLS, protocol).
    #[error("cannot reach git remote `{url}`")]
    Unreachable {
        /// The remote URL.
        url: String,
        /// What git2 reported.
        #[source]
        source: git2::Error,
    },
    /// The remote refused our credentials, or none were acceptable.
    #[error("authentication to git remote `{url}` failed")]
    AuthFailed {
        /// The remote URL.
        url: String,
        /// What git2 reported.
        #[source]
        source: git2::Error,
    },
    /// `source.git.auth.token_env` names a variable that is not set (or not UTF-8).
    #[error("environment variable `{env}` named by source.git.auth.token_env is not set")]
    MissingToken {
        /// The variable name.
        env: String,
    },
    /// The remote does not advertise the configured branch or ref.
    #[error("git remote `{url}` has no ref `{reference}`")]
    RefNotFound {
        /// The remote URL.
        url: String,
        /// The configured branch or ref.
        reference: String,
    },
    /// The pinned commit is not on the remote (not reachable from any branch or tag).
    #[error("commit {commit} is not reachable on git remote `{url}`")]
    CommitNotFound {
        /// The remote URL.
        url: String,
        /// The pinned commit.
        commit: String,
    },
    /// A webhook announced a commit the remote does not advertise yet (a lagging replica).
    #[error("remote does not advertise pushed commit {after} yet (its tip is {tip})")]
    NotYetAdvertised {
        /// The commit from the webhook.
        after: RevisionId,
        /// What the remote advertises.
        tip: RevisionId,
    },
    /// Fetching failed after the connection was made (and after one fresh re-clone).
    #[error("fetching `{reference}` from `{url}` failed")]
    Fetch {
        /// The remote URL.
        url: String,
        /// The refspec source fetched.
        reference: String,
        /// What git2 reported.
        #[source]
        source: git2::Error,
    },
    /// The local clone could not be read or written even after removing and
    /// re-creating it (disk full, permissions).
    #[error("local git cache `{path}` is unusable")]
    Cache {
        /// The clone's folder.
        path: PathBuf,
        /// What git2 reported.
        #[source]
        source: git2::Error,
    },
    /// A commit or tree could not be read from the local clone, even after a re-clone.
    #[error("reading {what} of commit {commit}")]
    Read {
        /// What was being read.
        what: String,
        /// The commit.
        commit: String,
        /// What git2 reported.
        #[source]
        source: git2::Error,
    },
    /// File system IO failed (folder source, or managing the clone's folder).
    #[error("I/O error on `{path}`")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The folder watcher could not be started.
    #[error("cannot watch `{path}`")]
    Watch {
        /// The watched folder.
        path: PathBuf,
        /// What notify reported.
        #[source]
        source: notify::Error,
    },
    /// A trust file named by `source.git.verify` (allowed signers, OpenPGP keys) cannot
    /// be used. No commit is accepted until it is fixed.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    TrustFile {
        /// The file.
        path: PathBuf,
        /// 1-based line, when one is to blame.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// The source configuration cannot work (for example a malformed `ref`).
    #[error("source configuration: {message}")]
    Config {
        /// What is wrong, starting with the field path.
        message: String,
    },
}

/// A coarse classification for metrics, alerts and retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceErrorKind {
    /// Network trouble; retry with backoff.
    Unreachable,
    /// Credentials missing or refused; retrying helps only after an operator acts.
    Auth,
    /// The configured ref or commit is absent on the remote.
    NotFound,
    /// A webhook ran ahead of the remote; retry soon.
    Lagging,
    /// Local disk or clone trouble.
    Local,
    /// The configuration cannot work; fix the config.
    Config,
}

impl SourceError {
    /// The error's class.
    pub fn kind(&self) -> SourceErrorKind {
        match self {
            SourceError::Unreachable { .. } | SourceError::Fetch { .. } => {
                SourceErrorKind::Unreachable
            }
            SourceError::AuthFailed { .. } | SourceError::MissingToken { .. } => {
                SourceErrorKind::Auth
            }
            SourceError::RefNotFound { .. } | SourceError::CommitNotFound { .. } => {
                SourceErrorKind::NotFound
            }
            SourceError::NotYetAdvertised { .. } => SourceErrorKind::Lagging,
            SourceError::Cache { .. }
            | SourceError::Read { .. }
            | SourceError::Io { .. }
            | SourceError::Watch { .. } => SourceErrorKind::Local,
            SourceError::Config { .. } | SourceError::TrustFile { .. } => SourceErrorKind::Config,
        }
    }
}
