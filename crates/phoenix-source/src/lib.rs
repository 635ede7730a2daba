//! Phoenix's desired-state sources (design sections 2 and 7): a Git repository read
//! through git2, or a local folder watched with notify. Either one turns what it finds
//! into a [`Revision`]: every group by name with its spec hash and source path.
//!
//! # Using a source from the daemon loop
//!
//! Open one with [`Source::open`] and call [`Source::poll`] whenever it is due (its
//! [`Source::interval`], jittered by [`PollSchedule`]), when a push webhook arrives
//! ([`Source::poll_now`] with the pushed commit), or when a folder's [`WatchSignal`]
//! fires. A poll answers [`PollOutcome::Unchanged`], [`PollOutcome::Accepted`] (a new
//! revision is in force) or [`PollOutcome::Rejected`] (the newest revision is invalid
//! and the last good one stays in force), or a typed [`SourceError`] after which the
//! caller waits [`PollSchedule::next_delay`] and polls again. An error never replaces
//! the last good revision.
//!
//! **Polling is blocking.** git2 does network and disk IO synchronously, and a folder
//! scan reads files, so every `poll` blocks the calling thread (from milliseconds up to
//! a network timeout). Async callers must run it on the blocking pool, for example
//! `tokio::task::spawn_blocking(move || { let outcome = source.poll(); (source, outcome) })`,
//! or keep the source in a `std::sync::Mutex` locked only inside the blocking closure.
//! Sources are `Send`. [`WatchSignal::changed`] is the one async function here; it does
//! no IO.
//!
//! # Atomic, incremental revisions
//!
//! Both sources keep, per desired-state file, its blob id and its parse result
//! ([`loader`]). A new commit is diffed against the previous one and only changed blobs
//! are read and parsed; [`PollOutcome`] lists exactly which paths were parsed. A revision
//! is accepted as a whole or rejected as a whole: one invalid file or two files naming
//! the same group rejects it, keeping the [`Rejection`] (revision, path, line, column,
//! message) for the status API.
//!
//! Architecture invariant: this is the only crate that links git2 and notify; no git2 or
//! notify type appears in its public API except as an error's `source()`.

pub mod backoff;
pub mod dir;
pub mod error;
pub mod git;
pub mod loader;
mod repack;
pub mod revision;
pub mod verify;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use phoenix_core::config::SourceConfig;

pub use backoff::{Backoff, PollSchedule, jitter};
pub use dir::{DirSource, WatchSignal};
pub use error::{SourceError, SourceErrorKind};
pub use git::GitSource;
pub use revision::{
    CommitInfo, DesiredGroup, PollOutcome, Problem, Rejection, Revision, RevisionId, Signature,
    SignatureKind,
};

/// The configured source, whichever kind it is. The daemon loop owns one.
#[derive(Debug)]
pub enum Source {
    /// `source.git`.
    Git(GitSource),
    /// `source.dir`.
    Dir(DirSource),
}

impl Source {
    /// Open the configured source. A Git source keeps its clone under
    /// `<state_dir>/git/`; nothing touches the network until the first poll. A folder
    /// source starts its watcher here when `watch` is on.
    pub fn open(config: &SourceConfig, state_dir: &Path) -> Result<Source, SourceError> {
        Ok(match config {
            SourceConfig::Git(git) => Source::Git(GitSource::open(git, &state_dir.join("git"))?),
            SourceConfig::Dir(dir) => Source::Dir(DirSource::open(dir)?),
        })
    }

    /// After a restart, put the last accepted revision back in force (Git sources, when
    /// the commit is still in the local clone). A folder keeps no history, so a folder
    /// source answers `None`. Blocking.
    pub fn restore(&mut self, id: &RevisionId) -> Result<Option<Arc<Revision>>, SourceError> {
        match self {
            Source::Git(git) => git.restore(id),
            Source::Dir(_) => Ok(None),
        }
    }

    /// Look for a new revision. Blocking: see the crate docs.
    pub fn poll(&mut self) -> Result<PollOutcome, SourceError> {
        self.poll_now(None)
    }

    /// Poll at once, for example on a push webhook. With `after` (the pushed commit), a
    /// Git source that has already seen that commit answers `Unchanged` without network
    /// IO, and one whose remote does not advertise it yet answers
    /// [`SourceError::NotYetAdvertised`] so the caller retries shortly. A folder source
    /// ignores `after`.
    pub fn poll_now(&mut self, after: Option<&RevisionId>) -> Result<PollOutcome, SourceError> {
        match self {
            Source::Git(git) => git.poll_now(after),
            Source::Dir(dir) => dir.poll(),
        }
    }

    /// The revision in force (the last accepted one, carrying the newest rejection if
    /// any), or `None` before the first accepted revision.
    pub fn current(&self) -> Option<Arc<Revision>> {
        match self {
            Source::Git(git) => git.current(),
            Source::Dir(dir) => dir.current(),
        }
    }

    /// The rejection of the newest revision, if it was rejected.
    pub fn rejection(&self) -> Option<Arc<Rejection>> {
        match self {
            Source::Git(git) => git.rejection(),
            Source::Dir(dir) => dir.rejection(),
        }
    }

    /// How often to poll (before jitter).
    pub fn interval(&self) -> Duration {
        match self {
            Source::Git(git) => git.interval(),
            Source::Dir(dir) => dir.interval(),
        }
    }

    /// For a watched folder, the signal that fires (debounced) when files change.
    pub fn watch_signal(&self) -> Option<WatchSignal> {
        match self {
            Source::Git(_) => None,
            Source::Dir(dir) => dir.watch_signal(),
        }
    }
}
