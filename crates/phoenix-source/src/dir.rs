//! [`DirSource`]: desired state from a local folder, with the same atomic semantics as
//! Git. Each poll is a full rescan: every `*.yaml`/`*.yml` file below the folder (hidden
//! entries skipped) is read and its git-style blob id computed; the [`Loader`] parses
//! only files whose content changed, and only their content is kept while the poll
//! runs (a rescan of an unchanged folder holds no file content). The revision id is `sha256:` over the sorted
//! `(path, blob id)` list, so it changes exactly when some file's content or name does.
//!
//! With `watch: true` a notify watcher runs beside it. The watcher only signals: events
//! are debounced on a small thread and wake [`WatchSignal::changed`]; the daemon then
//! polls. The periodic rescan (`interval`) is the backstop for lost events.

use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use phoenix_core::config::DirSourceConfig;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::error::SourceError;
use crate::loader::{
    BlobId, Change, Loader, MAX_FILE_BYTES, Verdict, escape_file_name, is_spec_file, non_utf8_name,
    refused_blob,
};
use crate::revision::{PollOutcome, Rejection, Revision, RevisionId};

/// Quiet time after the last file event before the signal fires.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Wakes the daemon when watched files change (debounced). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct WatchSignal {
    notify: Arc<Notify>,
}

impl WatchSignal {
    /// A signal that fires only when [`WatchSignal::fire`] is called: the folder
    /// watcher makes one per watched folder; the daemon loop's tests make their own.
    pub fn new() -> WatchSignal {
        WatchSignal {
            notify: Arc::new(Notify::new()),
        }
    }

    /// Fire the signal: wakes one waiter, or the next one to wait.
    pub fn fire(&self) {
        self.notify.notify_one();
    }

    /// Resolves after the next debounced burst of file events. A burst that happened
    /// while nobody was waiting is remembered (one permit), so none is lost.
    pub async fn changed(&self) {
        self.notify.notified().await;
    }
}

/// Desired state from a local folder. Blocking; see the crate docs.
pub struct DirSource {
    root: PathBuf,
    interval: Duration,
    loader: Loader,
    seen: Option<RevisionId>,
    current: Option<Arc<Revision>>,
    rejection: Option<Arc<Rejection>>,
    signal: Option<WatchSignal>,
    /// Kept alive for as long as the source; dropping it stops the debounce thread.
    _watcher: Option<RecommendedWatcher>,
}

impl std::fmt::Debug for DirSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirSource")
            .field("root", &self.root)
            .field("seen", &self.seen)
            .field("files", &self.loader.len())
            .field("watching", &self._watcher.is_some())
            .finish_non_exhaustive()
    }
}

impl DirSource {
    /// Prepare a folder source; starts the watcher when `watch` is on. The folder must
    /// exist when watching.
    pub fn open(config: &DirSourceConfig) -> Result<DirSource, SourceError> {
        let root = config.path.clone();
        let (signal, watcher) = if config.watch {
            let (signal, watcher) = start_watcher(&root)?;
            (Some(signal), Some(watcher))
        } else {
            (None, None)
        };
        Ok(DirSource {
            root,
            interval: config.interval,
            loader: Loader::new(),
            seen: None,
            current: None,
            rejection: None,
            signal,
            _watcher: watcher,
        })
    }

    /// How often to rescan (before jitter).
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The watcher's signal, when watching.
    pub fn watch_signal(&self) -> Option<WatchSignal> {
        self.signal.clone()
    }

    /// The revision in force, carrying the newest rejection if any.
    pub fn current(&self) -> Option<Arc<Revision>> {
        self.current.clone()
    }

    /// The rejection of the newest revision, if it was rejected.
    pub fn rejection(&self) -> Option<Arc<Rejection>> {
        self.rejection.clone()
    }

    /// Rescan the folder. Blocking.
    pub fn poll(&mut self) -> Result<PollOutcome, SourceError> {
        // Only the content of files that must be parsed is kept, not the whole folder.
        let loader = &self.loader;
        let mut files = scan(&self.root, |path, blob| loader.blob(path) != Some(blob))?;
        let mut hasher = Sha256::new();
        for (path, found) in &files {
            hasher.update(path.as_bytes());
            hasher.update([0]);
            hasher.update(found.blob.as_bytes());
        }
        let id = RevisionId::new(format!("sha256:{}", hex::encode(hasher.finalize())));
        if self.seen.as_ref() == Some(&id) {
            return Ok(PollOutcome::Unchanged);
        }
        let mut changes: Vec<Change> = files
            .iter()
            .filter(|(path, found)| self.loader.blob(path) != Some(found.blob))
            .map(|(path, found)| Change {
                path: path.clone(),
                blob: Some(found.blob),
                refused: found.refused.clone(),
            })
            .collect();
        changes.extend(
            self.loader
                .paths()
                .filter(|path| !files.contains_key(*path))
                .map(|path| Change::new(path.to_string(), None)),
        );
        let reparsed = self.loader.update(changes, |path, _| {
            // Each changed file is read once; hand its bytes over instead of copying.
            Ok::<_, SourceError>(
                files
                    .get_mut(path)
                    .and_then(|found| found.bytes.take())
                    .unwrap_or_default(),
            )
        })?;
        self.seen = Some(id.clone());
        Ok(match self.loader.evaluate() {
            Verdict::Accept(groups) => {
                let revision = Arc::new(Revision {
                    id,
                    commit: None,
                    groups,
                    rejection: None,
                    signature: None,
                });
                info!(revision = %revision.id, groups = revision.groups.len(), reparsed = reparsed.len(), "accepted folder revision");
                self.rejection = None;
                self.current = Some(Arc::clone(&revision));
                PollOutcome::Accepted { revision, reparsed }
            }
            Verdict::Reject(problems) => {
                let rejection = Arc::new(Rejection {
                    revision: id,
                    commit: None,
                    problems,
                });
                warn!(revision = %rejection.revision, problem = %rejection.primary(), "rejected folder revision; the last good revision stays in force");
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
        })
    }
}

/// One spec path found by [`scan`]: its blob id, its content when kept, or why it is
/// refused without being read.
#[derive(Debug)]
struct Found {
    blob: BlobId,
    bytes: Option<Vec<u8>>,
    refused: Option<String>,
}

/// What [`scan`] found, sorted by path.
type Scanned = std::collections::BTreeMap<String, Found>;

/// Every spec file below `root`: relative path (with `/`) -> what was found, sorted.
/// The content is kept only where `keep(path, blob)` says so (the files the loader must
/// parse); a rescan of an unchanged 100,000-file folder then holds no file content.
///
/// Hostile folders (issue 17): a symbolic link is followed only when its target stays
/// inside the folder; one leading outside (a file or a folder), a broken one, or a
/// folder link leading back to a folder above it (a loop) or to a folder already
/// scanned is refused, naming the link. A file over [`MAX_FILE_BYTES`] is refused from
/// its size without being read, and at most the limit is ever read. A name that is not
/// UTF-8 is refused too. Refused paths reject the revision.
fn scan(root: &Path, keep: impl Fn(&str, BlobId) -> bool) -> Result<Scanned, SourceError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SourceError::Io { path, source }
    };
    let base = std::fs::canonicalize(root).map_err(io(root))?;
    let mut files = Scanned::new();
    let mut visited = std::collections::HashSet::from([base.clone()]);
    // (real folder, its canonical path, relative prefix, whether a parent name was bad)
    let mut stack = vec![(base.clone(), String::new(), false)];
    while let Some((dir, prefix, bad_parent)) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let (name, bad_name) = escape_file_name(entry.file_name().as_bytes());
            if name.starts_with('.') {
                continue;
            }
            let relative = format!("{prefix}{name}");
            let path = entry.path();
            let kind = entry.file_type().map_err(io(&path))?;
            let refuse = |files: &mut Scanned, reason: String| {
                files.insert(
                    relative.clone(),
                    Found {
                        blob: refused_blob(&reason),
                        bytes: None,
                        refused: Some(reason),
                    },
                );
            };
            let (target, metadata) = if kind.is_symlink() {
                match follow(&base, &dir, &path) {
                    Ok(found) => found,
                    Err(reason) => {
                        refuse(&mut files, reason);
                        continue;
                    }
                }
            } else {
                (path.clone(), entry.metadata().map_err(io(&path))?)
            };
            if metadata.is_dir() {
                if kind.is_symlink() && !visited.insert(target.clone()) {
                    refuse(
                        &mut files,
                        "symbolic link leads to a folder already scanned through another path; remove the link".into(),
                    );
                    continue;
                }
                stack.push((target, format!("{relative}/"), bad_parent || bad_name));
            } else if metadata.is_file() && is_spec_file(&relative) {
                if bad_name || bad_parent {
                    refuse(&mut files, non_utf8_name());
                    continue;
                }
                match read_limited(&target, &relative, &keep)? {
                    Ok(found) => {
                        files.insert(relative, found);
                    }
                    Err(reason) => refuse(&mut files, reason),
                }
            }
        }
    }
    Ok(files)
}

/// Where a symbolic link in `dir` leads, when it stays inside `base` (the canonical
/// folder): its canonical target and metadata. Otherwise why it is refused.
fn follow(base: &Path, dir: &Path, link: &Path) -> Result<(PathBuf, std::fs::Metadata), String> {
    let target = match std::fs::canonicalize(link) {
        Ok(target) => target,
        Err(err) if err.raw_os_error() == Some(40) => {
            return Err("symbolic link loop (the link resolves to itself); remove the link".into());
        }
        Err(_) => {
            return Err(
                "broken symbolic link (its target does not exist or cannot be read)".into(),
            );
        }
    };
    if !target.starts_with(base) {
        return Err(
            "symbolic link leads outside the desired-state folder; links are followed only inside it".into(),
        );
    }
    let metadata = std::fs::metadata(&target)
        .map_err(|_| "symbolic link target cannot be read".to_string())?;
    if metadata.is_dir() && dir.starts_with(&target) {
        return Err(
            "symbolic link loop: it leads back to a folder that contains it; remove the link"
                .into(),
        );
    }
    Ok((target, metadata))
}

/// Read a spec file of at most [`MAX_FILE_BYTES`]: the size is checked on the open
/// file before reading, and no more than the limit plus one byte is ever read (a file
/// that grows meanwhile, or one that reports no size, cannot make it read more).
/// `Ok(Err(reason))` refuses the file.
fn read_limited(
    path: &Path,
    relative: &str,
    keep: &impl Fn(&str, BlobId) -> bool,
) -> Result<Result<Found, String>, SourceError> {
    use std::io::Read as _;
    let io = |source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    };
    let too_big = |size: u64| {
        format!("file is {size} bytes; desired-state files are limited to {MAX_FILE_BYTES} bytes")
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    if size > MAX_FILE_BYTES as u64 {
        return Ok(Err(too_big(size)));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() > MAX_FILE_BYTES {
        return Ok(Err(too_big(bytes.len() as u64)));
    }
    let blob = git2::Oid::hash_object(git2::ObjectType::Blob, &bytes)
        .map(BlobId::from_oid)
        .map_err(|_| SourceError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other("cannot hash file content"),
        })?;
    let bytes = keep(relative, blob).then_some(bytes);
    Ok(Ok(Found {
        blob,
        bytes,
        refused: None,
    }))
}

/// Start a recursive watcher whose events, debounced, wake the returned signal.
fn start_watcher(root: &Path) -> Result<(WatchSignal, RecommendedWatcher), SourceError> {
    let watch_err = |source| SourceError::Watch {
        path: root.to_path_buf(),
        source,
    };
    let (events, received) = mpsc::channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            // The receiver is gone only while shutting down.
            let _ = events.send(());
        }
    })
    .map_err(watch_err)?;
    watcher
        .watch(root, RecursiveMode::Recursive)
        .map_err(watch_err)?;
    let signal = WatchSignal::new();
    let fired = signal.clone();
    std::thread::Builder::new()
        .name("phoenix-dir-watch".into())
        .spawn(move || debounce(&received, DEBOUNCE, || fired.fire()))
        .map_err(|source| SourceError::Io {
            path: root.to_path_buf(),
            source,
        })?;
    Ok((signal, watcher))
}

/// Fire `fire` once per burst of events: after the first event, wait until `quiet`
/// passes without another. Returns when the sender is dropped.
fn debounce(events: &mpsc::Receiver<()>, quiet: Duration, fire: impl Fn()) {
    while events.recv().is_ok() {
        loop {
            match events.recv_timeout(quiet) {
                Ok(()) => continue,
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        fire();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn debounce_fires_once_per_burst() {
        let (tx, rx) = mpsc::channel();
        let fired = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&fired);
        let thread = std::thread::spawn(move || {
            debounce(&rx, Duration::from_millis(50), || {
                counter.fetch_add(1, Ordering::SeqCst);
            })
        });
        for _ in 0..10 {
            tx.send(()).expect("debounce thread is alive");
        }
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(fired.load(Ordering::SeqCst), 1, "a burst fires once");
        tx.send(()).expect("debounce thread is alive");
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(fired.load(Ordering::SeqCst), 2, "a later event fires again");
        drop(tx);
        thread
            .join()
            .expect("debounce thread ends when the sender is gone");
    }
}
