//! [`GitSource`]: desired state from a Git repository through git2.
//!
//! The source keeps a bare clone under its cache folder (one per URL) and a private ref,
//! `refs/phoenix/target`, for the commit it follows. Each poll:
//!
//! 1. asks the remote where the configured ref points (an ls-remote; a pinned commit
//!    needs no network once it is local) and stops with `Unchanged` if that is the commit
//!    already evaluated;
//! 2. fetches that ref with a forced refspec, so force-pushes and rewritten history just
//!    move `refs/phoenix/target`;
//! 3. diffs the configured subfolder's tree against the previous one (or, when the old
//!    tree is gone, compares blob ids against the index) and hands the changed paths to
//!    the [`Loader`], which parses only those blobs;
//! 4. accepts or rejects the revision as a whole.
//!
//! A clone that cannot be opened, or whose objects cannot be read or fetched into, is
//! removed and cloned again within the same poll. Credentials come from
//! [`GitAuthConfig`]: an SSH key file or the SSH agent, or an HTTPS token read from an
//! environment variable at every connection (so rotation needs no restart).

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use git2::{
    AutotagOption, Cred, CredentialType, Direction, ErrorClass, ErrorCode, FetchOptions, Oid,
    RemoteCallbacks, Repository, Tree,
};
use phoenix_core::config::{GitAuthConfig, GitSourceConfig, GitVerifyConfig, VerifyMode};
use phoenix_core::redact::{redact_url, redact_urls_in, url_host};
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use crate::error::SourceError;
use crate::loader::{
    BlobId, Change, Loader, Verdict, escape_file_name, is_spec_file, non_utf8_name,
};
use crate::revision::{CommitInfo, PollOutcome, Problem, Rejection, Revision, RevisionId};
use crate::verify::{Signature, SignatureFailure, TrustedKeys, trust_stamp, verify_signature};

/// The private ref the followed commit is fetched into.
const TARGET_REF: &str = "refs/phoenix/target";

/// What the configuration asks to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A full ref name such as `refs/heads/main` or `refs/tags/v3`.
    Ref(String),
    /// A short name resolved against the remote: `refs/tags/<name>`, then `refs/heads/<name>`.
    Short(String),
    /// A pinned commit.
    Commit(Oid),
}

impl Target {
    /// From `branch` / `ref`: a branch, a full ref, a 40-hex commit id, or a short name.
    pub fn from_config(config: &GitSourceConfig) -> Result<Target, SourceError> {
        match (&config.branch, &config.reference) {
            (Some(_), Some(_)) => Err(SourceError::Config {
                message: "source.git: set `branch` or `ref`, not both".into(),
            }),
            (Some(branch), None) => Ok(Target::Ref(format!("refs/heads/{branch}"))),
            (None, Some(reference)) => {
                let reference = reference.trim();
                if reference.len() == 40 && reference.bytes().all(|b| b.is_ascii_hexdigit()) {
                    let oid = Oid::from_str(reference).map_err(|_| SourceError::Config {
                        message: format!("source.git.ref: `{reference}` is not a commit id"),
                    })?;
                    Ok(Target::Commit(oid))
                } else if reference.starts_with("refs/") {
                    Ok(Target::Ref(reference.to_string()))
                } else if reference.is_empty() {
                    Err(SourceError::Config {
                        message: "source.git.ref: must not be empty".into(),
                    })
                } else {
                    Ok(Target::Short(reference.to_string()))
                }
            }
            (None, None) => Ok(Target::Ref("refs/heads/main".into())),
        }
    }

    fn describe(&self) -> String {
        match self {
            Target::Ref(name) | Target::Short(name) => name.clone(),
            Target::Commit(oid) => oid.to_string(),
        }
    }
}

/// Desired state from a Git repository. Blocking; see the crate docs.
pub struct GitSource {
    url: String,
    target: Target,
    /// Subfolder inside the repository, without leading or trailing `/`; empty = root.
    subdir: String,
    interval: Duration,
    auth: GitAuthConfig,
    /// `source.git.verify`: which commits must be signed, by whom (boxed: most
    /// sources have none, and `Source` stays small).
    verify: Option<Box<GitVerifyConfig>>,
    /// When the commit last evaluated was rejected for its signature: the trust files'
    /// stamp then. A changed stamp (a key added or rotated) has it evaluated again.
    signature_rejected: Option<Box<[u8; 32]>>,
    clone_dir: PathBuf,
    repo: Option<Repository>,
    loader: Loader,
    /// The last commit evaluated (accepted or rejected) and its subfolder tree.
    seen: Option<(Oid, Option<Oid>)>,
    current: Option<Arc<Revision>>,
    rejection: Option<Arc<Rejection>>,
}

impl std::fmt::Debug for GitSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitSource")
            .field("url", &redact_url(&self.url))
            .field("target", &self.target)
            .field("subdir", &self.subdir)
            .field("clone_dir", &self.clone_dir)
            .field("seen", &self.seen.map(|(commit, _)| commit.to_string()))
            .field("files", &self.loader.len())
            .finish_non_exhaustive()
    }
}

impl GitSource {
    /// Prepare a source whose clone lives under `cache_root` (created if missing). No
    /// network IO happens until the first poll.
    pub fn open(config: &GitSourceConfig, cache_root: &Path) -> Result<GitSource, SourceError> {
        let target = Target::from_config(config)?;
        if config.url.trim().is_empty() {
            return Err(SourceError::Config {
                message: "source.git.url: must not be empty".into(),
            });
        }
        let subdir = config
            .path
            .trim_matches('/')
            .trim_start_matches("./")
            .to_string();
        let subdir = if subdir == "." { String::new() } else { subdir };
        if subdir.split('/').any(|part| part == "..") {
            return Err(SourceError::Config {
                message: format!(
                    "source.git.path: `{}` must stay inside the repository",
                    config.path
                ),
            });
        }
        if token_over_plain_http(&config.url, &config.auth) {
            warn!(url = %redact_url(&config.url), "source.git.auth.token_env is set but the URL is plain http://: the token would cross the network unencrypted; use https://");
        }
        let digest = Sha256::digest(config.url.as_bytes());
        let clone_dir = cache_root.join(format!("{}.git", hex::encode(&digest[..8])));
        Ok(GitSource {
            url: config.url.clone(),
            target,
            subdir,
            interval: config.interval,
            auth: config.auth.clone(),
            verify: config.verify.clone(),
            signature_rejected: None,
            clone_dir,
            repo: None,
            loader: Loader::new(),
            seen: None,
            current: None,
            rejection: None,
        })
    }

    /// The folder of the local clone.
    pub fn clone_dir(&self) -> &Path {
        &self.clone_dir
    }

    /// How often to poll (before jitter).
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The revision in force, carrying the newest rejection if any.
    pub fn current(&self) -> Option<Arc<Revision>> {
        self.current.clone()
    }

    /// The rejection of the newest revision, if it was rejected.
    pub fn rejection(&self) -> Option<Arc<Rejection>> {
        self.rejection.clone()
    }

    /// The commit last evaluated, accepted or rejected.
    pub fn last_seen(&self) -> Option<RevisionId> {
        self.seen
            .map(|(commit, _)| RevisionId::new(commit.to_string()))
    }

    /// Look for a new commit. Blocking.
    pub fn poll(&mut self) -> Result<PollOutcome, SourceError> {
        self.poll_now(None)
    }

    /// After a restart: put the last revision accepted before the restart back in force,
    /// if its commit is still in the local clone, so that a rejected newest commit keeps
    /// the last good state instead of leaving the daemon with none. Returns the restored
    /// revision, or `None` when the commit is gone or no longer valid. Blocking.
    pub fn restore(&mut self, id: &RevisionId) -> Result<Option<Arc<Revision>>, SourceError> {
        let Ok(oid) = Oid::from_str(id.as_str()) else {
            return Ok(None);
        };
        if self.repo()?.find_commit(oid).is_err() {
            return Ok(None);
        }
        match self.load(oid)? {
            PollOutcome::Accepted { revision, .. } => Ok(Some(revision)),
            PollOutcome::Rejected { .. } | PollOutcome::Unchanged => Ok(None),
        }
    }

    /// Poll now, optionally aimed at `after`, the commit a push webhook announced: if it
    /// is the commit last evaluated the answer is `Unchanged` without network IO; if the
    /// remote still advertises an older commit the answer is
    /// [`SourceError::NotYetAdvertised`]. Blocking.
    pub fn poll_now(&mut self, after: Option<&RevisionId>) -> Result<PollOutcome, SourceError> {
        self.forget_signature_rejection_after_key_change();
        if let (Some(after), Some((seen, _))) = (after, self.seen)
            && after.as_str() == seen.to_string()
        {
            return Ok(PollOutcome::Unchanged);
        }
        if let (Some(after), Target::Ref(name)) = (after, self.target.clone()) {
            match self.poll_pushed(&name, after) {
                Ok(outcome) => return Ok(outcome),
                Err(err @ SourceError::NotYetAdvertised { .. }) => return Err(err),
                Err(err) => {
                    debug!(error = %phoenix_core::chain(&err), "fetching the pushed ref directly failed; listing the remote's refs first");
                }
            }
        }
        let tip = self.resolve_tip()?;
        if self.seen.map(|(commit, _)| commit) == Some(tip.commit_hint) {
            return match after {
                Some(after) if after.as_str() != tip.commit_hint.to_string() => {
                    Err(SourceError::NotYetAdvertised {
                        after: after.clone(),
                        tip: RevisionId::new(tip.commit_hint.to_string()),
                    })
                }
                _ => Ok(PollOutcome::Unchanged),
            };
        }
        match self.fetch_and_load(&tip) {
            Err(err) if is_local_damage(&err) => {
                warn!(clone = %self.clone_dir.display(), error = %phoenix_core::chain(&err), "local git clone is damaged; removing it and cloning again");
                self.reset_clone()?;
                self.fetch_and_load(&tip)
            }
            other => other,
        }
    }

    /// After a signature rejection, a change of the trust files (a key added, a window
    /// widened) makes the rejected commit count as not yet evaluated, so this poll
    /// evaluates it again.
    fn forget_signature_rejection_after_key_change(&mut self) {
        let (Some(stamp), Some(config)) = (&self.signature_rejected, &self.verify) else {
            return;
        };
        if trust_stamp(config) != **stamp {
            info!(
                "trust files changed since a commit was rejected for its signature; evaluating it again"
            );
            self.signature_rejected = None;
            self.seen = self.seen.map(|(_, tree)| (Oid::ZERO_SHA1, tree));
        }
    }

    /// A push webhook announced `after` on the followed ref: fetch the ref at once,
    /// without first listing the remote's refs (one connection to the remote instead of
    /// two, which is most of a push's latency). Any error sends the caller down the
    /// ordinary path, which lists the refs and classifies errors precisely.
    fn poll_pushed(&mut self, name: &str, after: &RevisionId) -> Result<PollOutcome, SourceError> {
        let tip = Tip {
            fetch: Some(name.to_string()),
            commit_hint: Oid::ZERO_SHA1,
        };
        let commit = self.fetch(&tip)?;
        if self.seen.map(|(seen, _)| seen) == Some(commit) {
            return if after.as_str() == commit.to_string() {
                Ok(PollOutcome::Unchanged)
            } else {
                Err(SourceError::NotYetAdvertised {
                    after: after.clone(),
                    tip: RevisionId::new(commit.to_string()),
                })
            };
        }
        self.load(commit)
    }

    /// Where the remote says the target points. For a pinned commit present locally, no
    /// network IO happens.
    fn resolve_tip(&mut self) -> Result<Tip, SourceError> {
        if let Target::Commit(oid) = self.target {
            return Ok(Tip {
                fetch: None,
                commit_hint: oid,
            });
        }
        let url = self.url.clone();
        let auth = self.auth.clone();
        let target = self.target.clone();
        let repo = self.repo()?;
        let mut remote = repo
            .remote_anonymous(&url)
            .map_err(|source| SourceError::Config {
                message: format!(
                    "source.git.url: `{}` is not usable ({})",
                    redact_url(&url),
                    redact_urls_in(source.message())
                ),
            })?;
        let attempts = Cell::new(0u32);
        let heads: Vec<(String, Oid)> = {
            let callbacks = callbacks(&url, &auth, &attempts)?;
            let connection = remote
                .connect_auth(Direction::Fetch, Some(callbacks), None)
                .map_err(|source| classify_network(&url, source, attempts.get()))?;
            connection
                .list()
                .map_err(|source| classify_network(&url, source, attempts.get()))?
                .iter()
                .map(|head| (head.name().to_string(), head.oid()))
                .collect()
        };
        let find = |name: &str| heads.iter().find(|(n, _)| n == name).map(|(_, oid)| *oid);
        let candidates = match &target {
            Target::Ref(name) => vec![name.clone()],
            Target::Short(name) => vec![format!("refs/tags/{name}"), format!("refs/heads/{name}")],
            Target::Commit(_) => Vec::new(),
        };
        for name in candidates {
            if let Some(oid) = find(&name) {
                // Annotated tags are advertised twice: the tag object, and `^{}` peeled.
                let peeled = find(&format!("{name}^{{}}")).unwrap_or(oid);
                return Ok(Tip {
                    fetch: Some(name),
                    commit_hint: peeled,
                });
            }
        }
        Err(SourceError::RefNotFound {
            url: redact_url(&url).into_owned(),
            reference: target.describe(),
        })
    }

    fn fetch_and_load(&mut self, tip: &Tip) -> Result<PollOutcome, SourceError> {
        let commit_id = self.fetch(tip)?;
        self.consolidate_packs(commit_id)?;
        if self.seen.map(|(commit, _)| commit) == Some(commit_id) {
            return Ok(PollOutcome::Unchanged);
        }
        self.load(commit_id)
    }

    /// Make the target commit local; returns it.
    fn fetch(&mut self, tip: &Tip) -> Result<Oid, SourceError> {
        let url = self.url.clone();
        let auth = self.auth.clone();
        let repo = self.repo()?;
        let have_commit = |repo: &Repository, oid: Oid| repo.find_commit(oid).is_ok();
        let (refspecs, reference): (Vec<String>, String) = match &tip.fetch {
            Some(name) => {
                let local = repo
                    .refname_to_id(TARGET_REF)
                    .ok()
                    .and_then(|id| repo.find_object(id, None).ok())
                    .and_then(|obj| obj.peel_to_commit().ok())
                    .map(|c| c.id());
                if local == Some(tip.commit_hint) {
                    return Ok(tip.commit_hint);
                }
                (vec![format!("+{name}:{TARGET_REF}")], name.clone())
            }
            None => {
                if have_commit(repo, tip.commit_hint) {
                    return Ok(tip.commit_hint);
                }
                (
                    vec![
                        "+refs/heads/*:refs/phoenix/heads/*".to_string(),
                        "+refs/tags/*:refs/phoenix/tags/*".to_string(),
                    ],
                    tip.commit_hint.to_string(),
                )
            }
        };
        let attempts = Cell::new(0u32);
        {
            let mut remote = repo
                .remote_anonymous(&url)
                .map_err(|source| SourceError::Config {
                    message: format!(
                        "source.git.url: `{}` is not usable ({})",
                        redact_url(&url),
                        redact_urls_in(source.message())
                    ),
                })?;
            let mut options = FetchOptions::new();
            options.remote_callbacks(callbacks(&url, &auth, &attempts)?);
            options.download_tags(AutotagOption::None);
            options.update_fetchhead(false);
            debug!(url = %redact_url(&url), reference = %reference, "fetching");
            let started = std::time::Instant::now();
            remote
                .fetch(&refspecs, Some(&mut options), None)
                .map_err(|source| classify_fetch(&url, &reference, source, attempts.get()))?;
            debug!(
                took_ms = started.elapsed().as_secs_f64() * 1000.0,
                "fetched"
            );
        }
        match &tip.fetch {
            Some(_) => {
                let object = repo
                    .revparse_single(TARGET_REF)
                    .map_err(|source| read_error("the fetched ref", &reference, source))?;
                let commit = object
                    .peel_to_commit()
                    .map_err(|source| read_error("the fetched ref", &reference, source))?;
                Ok(commit.id())
            }
            None => {
                if have_commit(repo, tip.commit_hint) {
                    Ok(tip.commit_hint)
                } else {
                    Err(SourceError::CommitNotFound {
                        url: redact_url(&url).into_owned(),
                        commit: tip.commit_hint.to_string(),
                    })
                }
            }
        }
    }

    /// Evaluate `commit_id`: diff, parse what changed, accept or reject.
    fn load(&mut self, commit_id: Oid) -> Result<PollOutcome, SourceError> {
        let revision = RevisionId::new(commit_id.to_string());
        let prefix = if self.subdir.is_empty() {
            String::new()
        } else {
            format!("{}/", self.subdir)
        };
        let old_tree = self.seen.and_then(|(_, tree)| tree);
        let signature = match self.verify_commits(commit_id)? {
            Ok(signature) => signature,
            Err(problem) => {
                let repo = self.repo.as_ref().expect("fetch opened the clone");
                let info = repo
                    .find_commit(commit_id)
                    .map(|commit| commit_info(&commit))
                    .map_err(|source| read_error("the commit", revision.as_str(), source))?;
                let rejection = Arc::new(Rejection {
                    revision,
                    commit: Some(info),
                    problems: vec![problem],
                });
                // The index still holds the old tree's files: keep diffing from there.
                self.seen = Some((commit_id, old_tree));
                self.signature_rejected = self
                    .verify
                    .as_deref()
                    .map(|config| Box::new(trust_stamp(config)));
                return Ok(self.reject(rejection, Vec::new()));
            }
        };
        self.signature_rejected = None;
        let repo = self.repo.as_ref().expect("fetch opened the clone");
        let read = read_tree(
            repo,
            commit_id,
            &self.subdir,
            old_tree,
            &self.loader,
            &prefix,
        )?;
        let Some((subtree_id, changes)) = read.changes else {
            // A missing folder is far more often a typo or a bad merge than an intent to
            // delete every group, so it rejects the revision.
            let rejection = Arc::new(Rejection {
                revision,
                commit: Some(read.info),
                problems: vec![crate::Problem {
                    path: Some(self.subdir.clone()),
                    line: None,
                    column: None,
                    message: format!(
                        "folder `{}` (source.git.path) does not exist in this commit; to remove every group keep the folder with a non-YAML file in it",
                        self.subdir
                    ),
                    commit: None,
                }],
            });
            self.seen = Some((commit_id, None));
            return Ok(self.reject(rejection, Vec::new()));
        };
        let commit_text = commit_id.to_string();
        let reparsed = self.loader.update(changes, |path, blob| {
            repo.find_blob(blob.oid())
                .map(|b| b.content().to_vec())
                .map_err(|e| read_error(&format!("blob {blob} ({path})"), &commit_text, e))
        })?;
        self.seen = Some((commit_id, Some(subtree_id)));
        Ok(match self.loader.evaluate() {
            Verdict::Accept(groups) => {
                let revision = Arc::new(Revision {
                    id: revision,
                    commit: Some(read.info),
                    groups,
                    rejection: None,
                    signature,
                });
                info!(revision = %revision.id, groups = revision.groups.len(), reparsed = reparsed.len(), "accepted revision");
                self.rejection = None;
                self.current = Some(Arc::clone(&revision));
                PollOutcome::Accepted { revision, reparsed }
            }
            Verdict::Reject(problems) => self.reject(
                Arc::new(Rejection {
                    revision,
                    commit: Some(read.info),
                    problems,
                }),
                reparsed,
            ),
        })
    }

    /// With `source.git.verify`, check the signatures `head` needs: the head commit
    /// (`mode: head`), or every commit not reachable from the last accepted one
    /// (`mode: all`; on first start, before any commit was accepted, the head only).
    /// The trust files are read again each time, so rotated keys apply at once. Answers
    /// the head's signature, or the problem that rejects the revision.
    fn verify_commits(&self, head: Oid) -> Result<Result<Option<Signature>, Problem>, SourceError> {
        let Some(config) = &self.verify else {
            return Ok(Ok(None));
        };
        let keys = TrustedKeys::load(config)?;
        let repo = self.repo.as_ref().expect("fetch opened the clone");
        let accepted = self
            .current
            .as_ref()
            .and_then(|revision| Oid::from_str(revision.id.as_str()).ok());
        let commits = match (keys.mode, accepted) {
            (VerifyMode::Head, _) | (VerifyMode::All, None) => vec![head],
            (VerifyMode::All, Some(accepted)) => {
                commits_since(repo, head, accepted).map_err(|source| {
                    read_error(
                        "the commits since the last accepted one",
                        &head.to_string(),
                        source,
                    )
                })?
            }
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let mut head_signature = None;
        for commit in commits {
            let checked = match repo.extract_signature(&commit, None) {
                Ok((signature, payload)) => verify_signature(&signature, &payload, &keys, now),
                Err(err) if err.code() == ErrorCode::NotFound => Err(SignatureFailure::Unsigned),
                Err(source) => {
                    return Err(read_error("the signature", &commit.to_string(), source));
                }
            };
            match checked {
                Ok(signature) if commit == head => head_signature = Some(signature),
                Ok(_) => {}
                Err(failure) => {
                    let message = if commit == head {
                        format!("commit {commit}: {failure}")
                    } else {
                        format!(
                            "commit {commit} (an ancestor of {head}; source.git.verify.mode is `all`): {failure}"
                        )
                    };
                    return Ok(Err(Problem {
                        path: None,
                        line: None,
                        column: None,
                        message,
                        commit: Some(RevisionId::new(commit.to_string())),
                    }));
                }
            }
        }
        Ok(Ok(head_signature))
    }

    fn reject(&mut self, rejection: Arc<Rejection>, reparsed: Vec<String>) -> PollOutcome {
        warn!(revision = %rejection.revision, problem = %rejection.primary(), "rejected revision; the last good revision stays in force");
        if let Some(current) = &self.current {
            let mut carried = Revision::clone(current);
            carried.rejection = Some(Arc::clone(&rejection));
            self.current = Some(Arc::new(carried));
        }
        self.rejection = Some(Arc::clone(&rejection));
        PollOutcome::Rejected {
            rejection,
            reparsed,
        }
    }

    /// One pack instead of many once fetches have piled them up ([`crate::repack`]). The
    /// accepted commit and the fetched one are kept even if no reference names them.
    /// Afterwards the clone is opened again, and the next load compares blob ids rather
    /// than diffing against a tree read through the old handle. A failure to consolidate
    /// only logs (the cache still works with its packs); one to reopen is the poll's error.
    fn consolidate_packs(&mut self, fetched: Oid) -> Result<(), SourceError> {
        let Some(repo) = self.repo.as_ref() else {
            return Ok(());
        };
        if crate::repack::pack_count(repo) <= crate::repack::MAX_PACKS {
            return Ok(());
        }
        let mut keep = vec![fetched];
        keep.extend(self.seen.map(|(commit, _)| commit));
        match crate::repack::consolidate(repo, &keep, crate::repack::MAX_PACKS) {
            Ok(removed) => {
                debug!(removed, "git cache packs consolidated into one");
                self.repo = None;
                if let Some((commit, _)) = self.seen {
                    self.seen = Some((commit, None));
                }
                self.repo()?;
            }
            Err(err) => {
                warn!(clone = %self.clone_dir.display(), error = %phoenix_core::chain(&err), "cannot consolidate the git cache's packs; keeping them");
            }
        }
        Ok(())
    }

    /// The clone, opened (or created) on first use. A clone that cannot be opened is
    /// removed and created again.
    fn repo(&mut self) -> Result<&Repository, SourceError> {
        if self.repo.is_none() {
            let repo = match Repository::open_bare(&self.clone_dir) {
                Ok(repo) => repo,
                Err(err) if err.code() == ErrorCode::NotFound && !self.clone_dir.exists() => {
                    self.init_clone()?
                }
                Err(err) => {
                    warn!(clone = %self.clone_dir.display(), error = %phoenix_core::chain(&err), "cannot open the local git clone; removing it and cloning again");
                    self.reset_clone_dir()?;
                    self.init_clone()?
                }
            };
            self.repo = Some(repo);
        }
        Ok(self.repo.as_ref().expect("just opened"))
    }

    fn init_clone(&self) -> Result<Repository, SourceError> {
        if let Some(parent) = self.clone_dir.parent() {
            std::fs::create_dir_all(parent).map_err(|source| SourceError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        Repository::init_bare(&self.clone_dir).map_err(|source| SourceError::Cache {
            path: self.clone_dir.clone(),
            source,
        })
    }

    fn reset_clone_dir(&self) -> Result<(), SourceError> {
        match std::fs::remove_dir_all(&self.clone_dir) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(SourceError::Io {
                path: self.clone_dir.clone(),
                source,
            }),
        }
    }

    /// Remove the clone and start afresh. The index keeps its blob ids, so the next load
    /// compares against them and still parses only what changed.
    fn reset_clone(&mut self) -> Result<(), SourceError> {
        self.repo = None;
        if let Some((commit, _)) = self.seen {
            // The old tree is gone with the clone; compare blob ids instead of diffing.
            self.seen = Some((commit, None));
        }
        self.reset_clone_dir()?;
        self.repo()?;
        Ok(())
    }
}

fn read_error(what: &str, commit: &str, source: git2::Error) -> SourceError {
    SourceError::Read {
        what: what.to_string(),
        commit: commit.to_string(),
        source,
    }
}

/// Where the target points: the ref to fetch (none for a pinned commit), and the commit
/// the remote advertises.
#[derive(Debug)]
struct Tip {
    fetch: Option<String>,
    commit_hint: Oid,
}

/// A commit's metadata and, unless the configured folder is missing, its folder tree id
/// and the spec files changed against the previous tree (or the index).
struct TreeRead {
    info: CommitInfo,
    changes: Option<(Oid, Vec<Change>)>,
}

fn read_tree(
    repo: &Repository,
    commit_id: Oid,
    subdir: &str,
    old_tree: Option<Oid>,
    loader: &Loader,
    prefix: &str,
) -> Result<TreeRead, SourceError> {
    let commit_text = commit_id.to_string();
    let err = |what: &str| {
        let commit_text = commit_text.clone();
        let what = what.to_string();
        move |source| read_error(&what, &commit_text, source)
    };
    let commit = repo.find_commit(commit_id).map_err(err("the commit"))?;
    let info = commit_info(&commit);
    let root = commit.tree().map_err(err("the root tree"))?;
    let subtree_id = if subdir.is_empty() {
        root.id()
    } else {
        match root.get_path(Path::new(subdir)) {
            Ok(entry) if entry.kind() == Some(git2::ObjectType::Tree) => entry.id(),
            Ok(_) => {
                return Ok(TreeRead {
                    info,
                    changes: None,
                });
            }
            Err(e) if e.code() == ErrorCode::NotFound => {
                return Ok(TreeRead {
                    info,
                    changes: None,
                });
            }
            Err(e) => return Err(err("the configured path")(e)),
        }
    };
    let new_tree = repo
        .find_tree(subtree_id)
        .map_err(err("the configured path"))?;
    let old_tree = old_tree.and_then(|id| repo.find_tree(id).ok());
    let changes = match &old_tree {
        Some(old) if old.id() == new_tree.id() => Vec::new(),
        Some(old) => diff_changes(repo, old, &new_tree, prefix).map_err(err("the tree diff"))?,
        None => full_changes(repo, loader, &new_tree, prefix).map_err(err("the tree"))?,
    };
    Ok(TreeRead {
        info,
        changes: Some((subtree_id, changes)),
    })
}

/// Every commit reachable from `head` but not from `accepted`, oldest first (parents
/// before children), so the first one to fail is the earliest. When `accepted` is no
/// longer in the clone, every commit reachable from `head`.
fn commits_since(repo: &Repository, head: Oid, accepted: Oid) -> Result<Vec<Oid>, git2::Error> {
    let mut walk = repo.revwalk()?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)?;
    walk.push(head)?;
    if repo.find_commit(accepted).is_ok() {
        walk.hide(accepted)?;
    }
    walk.collect()
}

/// Errors that mean the clone itself is damaged, as opposed to the network or the remote.
fn is_local_damage(err: &SourceError) -> bool {
    match err {
        SourceError::Read { .. } | SourceError::Cache { .. } => true,
        SourceError::Fetch { source, .. } => matches!(
            source.class(),
            ErrorClass::Odb
                | ErrorClass::Object
                | ErrorClass::Indexer
                | ErrorClass::Zlib
                | ErrorClass::Repository
                | ErrorClass::Reference
                | ErrorClass::Filesystem
        ),
        _ => false,
    }
}

fn classify_network(url: &str, source: git2::Error, auth_attempts: u32) -> SourceError {
    let (url, source) = (&*redact_url(url), redact_error(source));
    if source.code() == ErrorCode::Auth || auth_attempts > 1 {
        SourceError::AuthFailed {
            url: url.to_string(),
            source,
        }
    } else {
        SourceError::Unreachable {
            url: url.to_string(),
            source,
        }
    }
}

fn classify_fetch(
    url: &str,
    reference: &str,
    source: git2::Error,
    auth_attempts: u32,
) -> SourceError {
    let (url, source) = (&*redact_url(url), redact_error(source));
    if source.code() == ErrorCode::Auth || auth_attempts > 1 {
        return SourceError::AuthFailed {
            url: url.to_string(),
            source,
        };
    }
    match source.class() {
        ErrorClass::Net | ErrorClass::Ssh | ErrorClass::Http | ErrorClass::Ssl => {
            SourceError::Unreachable {
                url: url.to_string(),
                source,
            }
        }
        _ => SourceError::Fetch {
            url: url.to_string(),
            reference: reference.to_string(),
            source,
        },
    }
}

/// `err` with any URL in its message redacted (libgit2 quotes the URL it was given).
fn redact_error(err: git2::Error) -> git2::Error {
    match redact_urls_in(err.message()) {
        std::borrow::Cow::Borrowed(_) => err,
        std::borrow::Cow::Owned(message) => git2::Error::new(err.code(), err.class(), message),
    }
}

/// Whether a credential request for `request_url` may be answered: only when it goes
/// to the host of the configured URL (a redirect to another host gets no credentials).
pub fn credentials_allowed_for(configured_url: &str, request_url: &str) -> bool {
    match (url_host(configured_url), url_host(request_url)) {
        (Some(configured), Some(requested)) => configured == requested,
        // scp-like `user@host:path` URLs: libgit2 asks with the same form.
        (None, None) => scp_host(configured_url) == scp_host(request_url),
        _ => false,
    }
}

fn scp_host(url: &str) -> Option<&str> {
    let (before, _) = url.split_once(':')?;
    Some(before.rsplit_once('@').map_or(before, |(_, host)| host))
}

/// Whether a token would be sent in clear text: `auth.token_env` with an `http://` URL.
pub fn token_over_plain_http(url: &str, auth: &GitAuthConfig) -> bool {
    auth.token_env.is_some() && url.trim_start().to_ascii_lowercase().starts_with("http://")
}

/// What to answer a credential request with. Pure, so it is tested without a server.
/// Its `Debug` output never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub enum CredentialPlan {
    /// An SSH private key file.
    SshKey {
        /// User name for SSH.
        username: String,
        /// The key file.
        key: PathBuf,
    },
    /// Keys from the running SSH agent.
    SshAgent {
        /// User name for SSH.
        username: String,
    },
    /// HTTPS basic auth with a token as password.
    Token {
        /// User name sent with the token.
        username: String,
        /// The token.
        token: String,
    },
    /// Ask for the user name only (SSH asks this first when the URL has none).
    Username(String),
    /// Nothing configured fits what the server asks for.
    None,
}

impl std::fmt::Debug for CredentialPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialPlan::SshKey { username, key } => f
                .debug_struct("SshKey")
                .field("username", username)
                .field("key", key)
                .finish(),
            CredentialPlan::SshAgent { username } => f
                .debug_struct("SshAgent")
                .field("username", username)
                .finish(),
            CredentialPlan::Token { username, .. } => f
                .debug_struct("Token")
                .field("username", username)
                .field("token", &"<redacted>")
                .finish(),
            CredentialPlan::Username(username) => {
                f.debug_tuple("Username").field(username).finish()
            }
            CredentialPlan::None => f.write_str("None"),
        }
    }
}

/// Choose credentials for a request. `env` reads an environment variable.
pub fn plan_credentials(
    auth: &GitAuthConfig,
    allowed: CredentialType,
    url_username: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<CredentialPlan, SourceError> {
    let ssh_user = url_username.unwrap_or("git").to_string();
    if allowed.contains(CredentialType::USERNAME) {
        return Ok(CredentialPlan::Username(ssh_user));
    }
    if allowed.contains(CredentialType::SSH_KEY) {
        return Ok(match &auth.ssh_key_file {
            Some(key) => CredentialPlan::SshKey {
                username: ssh_user,
                key: key.clone(),
            },
            None => CredentialPlan::SshAgent { username: ssh_user },
        });
    }
    if allowed.contains(CredentialType::USER_PASS_PLAINTEXT)
        && let Some(name) = &auth.token_env
    {
        let token = env(name).ok_or_else(|| SourceError::MissingToken { env: name.clone() })?;
        let username = auth
            .username
            .clone()
            .or_else(|| url_username.map(str::to_string))
            .unwrap_or_else(|| "git".to_string());
        return Ok(CredentialPlan::Token { username, token });
    }
    Ok(CredentialPlan::None)
}

/// Remote callbacks answering credential requests from `auth`. `attempts` counts the
/// requests: libgit2 asks again after a refusal, so more than one means refused, and
/// the fourth request is answered with an error to stop the loop.
fn callbacks<'a>(
    configured_url: &'a str,
    auth: &'a GitAuthConfig,
    attempts: &'a Cell<u32>,
) -> Result<RemoteCallbacks<'a>, SourceError> {
    if let Some(name) = &auth.token_env
        && std::env::var(name).is_err()
    {
        return Err(SourceError::MissingToken { env: name.clone() });
    }
    let mut callbacks = RemoteCallbacks::new();
    callbacks.credentials(move |request_url, username, allowed| {
        attempts.set(attempts.get() + 1);
        if !credentials_allowed_for(configured_url, request_url) {
            return Err(git2::Error::new(
                ErrorCode::Auth,
                ErrorClass::Callback,
                format!(
                    "credentials are offered only to the configured host, not to `{}`",
                    redact_url(request_url)
                ),
            ));
        }
        if attempts.get() > 3 {
            return Err(git2::Error::new(
                ErrorCode::Auth,
                ErrorClass::Callback,
                "credentials were refused",
            ));
        }
        let plan = plan_credentials(auth, allowed, username, |name| std::env::var(name).ok())
            .map_err(|err| {
                git2::Error::new(ErrorCode::Auth, ErrorClass::Callback, err.to_string())
            })?;
        match plan {
            CredentialPlan::SshKey { username, key } => Cred::ssh_key(&username, None, &key, None),
            CredentialPlan::SshAgent { username } => Cred::ssh_key_from_agent(&username),
            CredentialPlan::Token { username, token } => {
                Cred::userpass_plaintext(&username, &token)
            }
            CredentialPlan::Username(username) => Cred::username(&username),
            CredentialPlan::None => Cred::default(),
        }
    });
    Ok(callbacks)
}

fn commit_info(commit: &git2::Commit<'_>) -> CommitInfo {
    let author = commit.author();
    CommitInfo {
        author: String::from_utf8_lossy(author.name_bytes()).into_owned(),
        email: String::from_utf8_lossy(author.email_bytes()).into_owned(),
        message: String::from_utf8_lossy(commit.message_bytes()).into_owned(),
        time: commit.time().seconds(),
    }
}

fn is_blob_mode(mode: i32) -> bool {
    // Regular and executable files; symlinks (0o120000) and submodules are not specs.
    mode == 0o100644 || mode == 0o100755
}

/// Changed spec files between two trees. Recursive: subtrees with equal ids are
/// skipped without being read, so a one-file commit reads only the trees on its path.
/// (libgit2's own tree-to-tree diff walked all 100,000 entries of the benchmark tree.)
fn diff_changes(
    repo: &Repository,
    old: &Tree<'_>,
    new: &Tree<'_>,
    prefix: &str,
) -> Result<Vec<Change>, git2::Error> {
    let mut changes = Vec::new();
    let level = Level {
        prefix,
        bad_prefix: false,
    };
    diff_into(repo, old, new, level, &mut changes)?;
    Ok(changes)
}

/// Where [`diff_into`] is in the tree: the path prefix, and whether a folder name on the
/// way was not UTF-8.
#[derive(Clone, Copy)]
struct Level<'a> {
    prefix: &'a str,
    bad_prefix: bool,
}

/// A tree entry reduced to what the diff compares: spec candidates (regular and
/// executable files) and subtrees; symlinks and submodules are not specs.
struct Slot<'a> {
    name: &'a [u8],
    id: Oid,
    mode: i32,
    is_tree: bool,
}

/// The entries of `tree` that matter, in Git's tree order.
fn slots<'a>(entries: &'a [git2::TreeEntry<'_>]) -> Vec<Slot<'a>> {
    let mut slots: Vec<Slot<'a>> = entries
        .iter()
        .filter_map(|entry| {
            let is_tree = entry.kind() == Some(git2::ObjectType::Tree);
            (is_tree || is_blob_mode(entry.filemode())).then(|| Slot {
                name: entry.name_bytes(),
                id: entry.id(),
                mode: entry.filemode(),
                is_tree,
            })
        })
        .collect();
    // Git writes trees sorted, so this is one linear check; a hand-made unsorted tree is
    // sorted here so the merge below stays correct.
    slots.sort_by(|a, b| tree_order(a, b));
    slots
}

/// Git's order of tree entries: by name bytes, a subtree's name compared as if it ended
/// in `/`.
fn tree_order(a: &Slot<'_>, b: &Slot<'_>) -> std::cmp::Ordering {
    let common = a.name.len().min(b.name.len());
    a.name[..common].cmp(&b.name[..common]).then_with(|| {
        let next = |slot: &Slot<'_>| {
            slot.name
                .get(common)
                .copied()
                .unwrap_or(if slot.is_tree { b'/' } else { 0 })
        };
        next(a).cmp(&next(b))
    })
}

/// The path of a tree entry under `prefix`, its bytes escaped when they are not UTF-8
/// (see [`escape_file_name`]), and whether they were.
fn slot_path(prefix: &str, slot: &Slot<'_>) -> (String, bool) {
    let (name, escaped) = escape_file_name(slot.name);
    (format!("{prefix}{name}"), escaped)
}

/// A spec file found in a tree: upserted with its blob, refused when its name (or a
/// folder's above it) is not UTF-8 (issue 17: a rejection, as in a folder source).
fn found_change(path: String, id: Oid, bad_name: bool) -> Change {
    Change {
        path,
        blob: Some(BlobId::from_oid(id)),
        refused: bad_name.then(non_utf8_name),
    }
}

/// One level of the tree diff: a merge of the two sorted entry lists, so its cost is the
/// number of entries compared, without building maps or copying names; only changed
/// entries become paths.
fn diff_into(
    repo: &Repository,
    old: &Tree<'_>,
    new: &Tree<'_>,
    level: Level<'_>,
    changes: &mut Vec<Change>,
) -> Result<(), git2::Error> {
    let Level { prefix, bad_prefix } = level;
    let old_entries: Vec<git2::TreeEntry<'_>> = old.iter().collect();
    let new_entries: Vec<git2::TreeEntry<'_>> = new.iter().collect();
    let old_slots = slots(&old_entries);
    let new_slots = slots(&new_entries);
    let removed = |slot: &Slot<'_>, changes: &mut Vec<Change>| -> Result<(), git2::Error> {
        let (path, _) = slot_path(prefix, slot);
        if slot.is_tree {
            walk_blobs(
                repo,
                &repo.find_tree(slot.id)?,
                &format!("{path}/"),
                &mut |path, _, _| {
                    changes.push(Change::new(path, None));
                },
            )
        } else {
            if is_spec_file(&path) {
                changes.push(Change::new(path, None));
            }
            Ok(())
        }
    };
    let added =
        |slot: &Slot<'_>, bad_parent: bool, changes: &mut Vec<Change>| -> Result<(), git2::Error> {
            let (path, bad_name) = slot_path(prefix, slot);
            let bad = bad_parent || bad_name;
            if slot.is_tree {
                walk_blobs(
                    repo,
                    &repo.find_tree(slot.id)?,
                    &format!("{path}/"),
                    &mut |path, id, bad_below| {
                        changes.push(found_change(path, id, bad || bad_below));
                    },
                )
            } else {
                // A new blob, or one whose content or mode changed: upserted.
                if is_spec_file(&path) {
                    changes.push(found_change(path, slot.id, bad));
                }
                Ok(())
            }
        };
    let (mut i, mut j) = (0, 0);
    loop {
        match (old_slots.get(i), new_slots.get(j)) {
            (None, None) => return Ok(()),
            (Some(o), None) => {
                removed(o, changes)?;
                i += 1;
            }
            (None, Some(n)) => {
                added(n, bad_prefix, changes)?;
                j += 1;
            }
            (Some(o), Some(n)) => match tree_order(o, n) {
                std::cmp::Ordering::Less => {
                    removed(o, changes)?;
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    added(n, bad_prefix, changes)?;
                    j += 1;
                }
                // Same name and kind (a file that became a folder sorts apart).
                std::cmp::Ordering::Equal => {
                    if o.id != n.id || o.mode != n.mode {
                        if o.is_tree {
                            let (path, bad_name) = slot_path(prefix, o);
                            let (old_sub, new_sub) = (repo.find_tree(o.id)?, repo.find_tree(n.id)?);
                            let sub = Level {
                                prefix: &format!("{path}/"),
                                bad_prefix: bad_prefix || bad_name,
                            };
                            diff_into(repo, &old_sub, &new_sub, sub, changes)?;
                        } else {
                            added(n, bad_prefix, changes)?;
                        }
                    }
                    i += 1;
                    j += 1;
                }
            },
        }
    }
}

/// Call `found(path, blob, name_not_utf8)` for every spec file below `tree`. Walks
/// the entries itself (libgit2's walk gives up on a folder name that is not UTF-8),
/// with an explicit stack, so a deep hostile tree cannot overflow the thread's stack.
fn walk_blobs(
    repo: &Repository,
    tree: &Tree<'_>,
    prefix: &str,
    found: &mut dyn FnMut(String, Oid, bool),
) -> Result<(), git2::Error> {
    let mut stack = vec![(tree.clone(), prefix.to_string(), false)];
    while let Some((tree, prefix, bad_prefix)) = stack.pop() {
        for entry in tree.iter() {
            let (name, bad_name) = escape_file_name(entry.name_bytes());
            let path = format!("{prefix}{name}");
            let bad = bad_prefix || bad_name;
            match entry.kind() {
                Some(git2::ObjectType::Tree) => {
                    stack.push((repo.find_tree(entry.id())?, format!("{path}/"), bad));
                }
                Some(git2::ObjectType::Blob)
                    if is_blob_mode(entry.filemode()) && is_spec_file(&path) =>
                {
                    found(path, entry.id(), bad);
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Changed spec files between the index and a tree, comparing blob ids: used for the
/// first load and whenever the previous tree is not available.
fn full_changes(
    repo: &Repository,
    loader: &Loader,
    tree: &Tree<'_>,
    prefix: &str,
) -> Result<Vec<Change>, git2::Error> {
    let mut changes = Vec::new();
    let mut present = std::collections::HashSet::new();
    walk_blobs(repo, tree, prefix, &mut |path, id, bad_name| {
        if loader.blob(&path) != Some(BlobId::from_oid(id)) {
            changes.push(found_change(path.clone(), id, bad_name));
        }
        present.insert(path);
    })?;
    for path in loader.paths() {
        if !present.contains(path) {
            changes.push(Change::new(path.to_string(), None));
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(branch: Option<&str>, reference: Option<&str>) -> GitSourceConfig {
        GitSourceConfig {
            url: "file:///tmp/x".into(),
            branch: branch.map(str::to_string),
            reference: reference.map(str::to_string),
            path: String::new(),
            interval: Duration::from_secs(30),
            auth: GitAuthConfig::default(),
            verify: None,
        }
    }

    #[test]
    fn targets_from_config() {
        assert_eq!(
            Target::from_config(&config(None, None)).ok(),
            Some(Target::Ref("refs/heads/main".into()))
        );
        assert_eq!(
            Target::from_config(&config(Some("prod"), None)).ok(),
            Some(Target::Ref("refs/heads/prod".into()))
        );
        assert_eq!(
            Target::from_config(&config(None, Some("refs/tags/v3"))).ok(),
            Some(Target::Ref("refs/tags/v3".into()))
        );
        assert_eq!(
            Target::from_config(&config(None, Some("v3"))).ok(),
            Some(Target::Short("v3".into()))
        );
        let sha = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            Target::from_config(&config(None, Some(sha))).ok(),
            Some(Target::Commit(Oid::from_str(sha).expect("valid hex")))
        );
        assert!(matches!(
            Target::from_config(&config(Some("a"), Some("b"))),
            Err(SourceError::Config { .. })
        ));
        assert!(matches!(
            Target::from_config(&config(None, Some(" "))),
            Err(SourceError::Config { .. })
        ));
    }

    /// Issue 17, defect 4: credentials go only to the configured host.
    #[test]
    fn credentials_only_to_the_configured_host() {
        let configured = "https://x-token@git.example.com/infra.git";
        assert!(credentials_allowed_for(
            configured,
            "https://git.example.com/infra.git"
        ));
        assert!(credentials_allowed_for(
            configured,
            "https://GIT.example.com:443/other.git"
        ));
        assert!(!credentials_allowed_for(
            configured,
            "https://evil.example.net/infra.git"
        ));
        assert!(!credentials_allowed_for(
            configured,
            "git@git.example.com:infra.git"
        ));
        assert!(credentials_allowed_for("git@host:a.git", "git@host:a.git"));
        assert!(!credentials_allowed_for(
            "git@host:a.git",
            "git@other:a.git"
        ));
    }

    /// Issue 17, defect 4: a token over plain http is detected (and warned about).
    #[test]
    fn token_over_plain_http_is_detected() {
        let mut auth = GitAuthConfig::default();
        assert!(!token_over_plain_http("http://h/x.git", &auth));
        auth.token_env = Some("GIT_TOKEN".into());
        assert!(token_over_plain_http("http://h/x.git", &auth));
        assert!(token_over_plain_http("HTTP://h/x.git", &auth));
        assert!(!token_over_plain_http("https://h/x.git", &auth));
    }

    #[test]
    fn credential_plans() {
        let none = |_: &str| None;
        let mut auth = GitAuthConfig::default();
        assert_eq!(
            plan_credentials(&auth, CredentialType::SSH_KEY, Some("deploy"), none).ok(),
            Some(CredentialPlan::SshAgent {
                username: "deploy".into()
            })
        );
        auth.ssh_key_file = Some(PathBuf::from("/keys/id"));
        assert_eq!(
            plan_credentials(&auth, CredentialType::SSH_KEY, None, none).ok(),
            Some(CredentialPlan::SshKey {
                username: "git".into(),
                key: PathBuf::from("/keys/id")
            })
        );
        assert_eq!(
            plan_credentials(&auth, CredentialType::USERNAME, None, none).ok(),
            Some(CredentialPlan::Username("git".into()))
        );
        assert_eq!(
            plan_credentials(&auth, CredentialType::USER_PASS_PLAINTEXT, None, none).ok(),
            Some(CredentialPlan::None)
        );
        auth.token_env = Some("GIT_TOKEN".into());
        assert!(matches!(
            plan_credentials(&auth, CredentialType::USER_PASS_PLAINTEXT, None, none),
            Err(SourceError::MissingToken { env }) if env == "GIT_TOKEN"
        ));
        let env = |name: &str| (name == "GIT_TOKEN").then(|| "s3cret".to_string());
        assert_eq!(
            plan_credentials(&auth, CredentialType::USER_PASS_PLAINTEXT, None, env).ok(),
            Some(CredentialPlan::Token {
                username: "git".into(),
                token: "s3cret".into()
            })
        );
        auth.username = Some("x-access-token".into());
        assert_eq!(
            plan_credentials(
                &auth,
                CredentialType::USER_PASS_PLAINTEXT,
                Some("ignored"),
                env
            )
            .ok(),
            Some(CredentialPlan::Token {
                username: "x-access-token".into(),
                token: "s3cret".into()
            })
        );
    }
}
