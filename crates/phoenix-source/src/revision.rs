//! The values a source hands to the daemon: [`Revision`] (the groups in force),
//! [`Rejection`] (why the newest revision was refused), and [`PollOutcome`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use phoenix_core::SpecHash;
use phoenix_core::spec::{GroupName, InstanceGroup};
use serde::Serialize;

pub use crate::verify::{Signature, SignatureKind};

/// The identity of a revision: a 40-hex commit id for a Git source, or
/// `sha256:<hex>` (a hash of every file's path and content) for a folder.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RevisionId(String);

impl RevisionId {
    /// Wrap an id. Commit ids are matched exactly, so pass the full 40-hex form.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RevisionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who made a commit, when and why. Folder revisions have none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommitInfo {
    /// Author name.
    pub author: String,
    /// Author e-mail.
    pub email: String,
    /// Full commit message.
    pub message: String,
    /// Commit time, seconds since the Unix epoch (UTC).
    pub time: i64,
}

/// One desired group as found in a revision.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredGroup {
    /// The file it came from, relative to the repository root (or the folder), with `/`.
    /// Shared with the source's index, which names the same path (see [`crate::loader`]).
    pub path: Arc<str>,
    /// Its spec hash.
    pub hash: SpecHash,
    /// The parsed document.
    pub group: Arc<InstanceGroup>,
}

impl DesiredGroup {
    /// The group's name.
    pub fn name(&self) -> &GroupName {
        self.group.name()
    }
}

/// The groups of a revision, by name. Shared: cloning a [`Revision`] is cheap.
pub type Groups = Arc<BTreeMap<GroupName, Arc<DesiredGroup>>>;

/// An accepted revision: what the daemon reconciles toward.
#[derive(Debug, Clone)]
pub struct Revision {
    /// Commit id or folder content hash.
    pub id: RevisionId,
    /// Commit metadata (Git sources only).
    pub commit: Option<CommitInfo>,
    /// Every group, by name. May be empty: the planner guards what it may do then.
    pub groups: Groups,
    /// When a newer revision was rejected, why. This revision stays in force meanwhile.
    pub rejection: Option<Arc<Rejection>>,
    /// The verified signature of the commit, when `source.git.verify` is on.
    pub signature: Option<Signature>,
}

/// One reason a revision was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The offending file, relative to the repository root (or folder), if one is to blame.
    pub path: Option<String>,
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// 1-based column, when known.
    pub column: Option<u64>,
    /// What is wrong.
    pub message: String,
    /// The commit to blame, when a commit rather than a file is at fault (an unsigned
    /// or wrongly signed commit, `source.git.verify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<RevisionId>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(path) = &self.path {
            write!(f, "{path}:")?;
            if let Some(line) = self.line {
                write!(f, "{line}:")?;
                if let Some(column) = self.column {
                    write!(f, "{column}:")?;
                }
            }
            f.write_str(" ")?;
        }
        f.write_str(&self.message)
    }
}

/// Why a revision was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// The refused revision.
    pub revision: RevisionId,
    /// Its commit metadata (Git sources only).
    pub commit: Option<CommitInfo>,
    /// Every problem found, invalid files first (by path), then duplicate names. Never empty.
    pub problems: Vec<Problem>,
}

impl Rejection {
    /// The problem to show first (the status API's `revision.error`).
    pub fn primary(&self) -> &Problem {
        self.problems
            .first()
            .expect("a rejection is only built with at least one problem")
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "revision {} rejected: {}", self.revision, self.primary())?;
        if self.problems.len() > 1 {
            write!(f, " (and {} more)", self.problems.len() - 1)?;
        }
        Ok(())
    }
}

/// What one poll found.
#[derive(Debug, Clone)]
pub enum PollOutcome {
    /// Nothing new since the last poll (accepted or rejected).
    Unchanged,
    /// A new revision is in force.
    Accepted {
        /// The revision now in force.
        revision: Arc<Revision>,
        /// Paths (repository-relative) read and parsed for it, sorted. Unchanged files
        /// and renamed files whose content did not change are not parsed again.
        reparsed: Vec<String>,
    },
    /// The newest revision is invalid; the previous accepted one stays in force.
    Rejected {
        /// Why.
        rejection: Arc<Rejection>,
        /// Paths read and parsed while evaluating it, sorted.
        reparsed: Vec<String>,
    },
}

impl PollOutcome {
    /// The paths parsed during this poll (empty for `Unchanged`).
    pub fn reparsed(&self) -> &[String] {
        match self {
            PollOutcome::Unchanged => &[],
            PollOutcome::Accepted { reparsed, .. } | PollOutcome::Rejected { reparsed, .. } => {
                reparsed
            }
        }
    }
}
