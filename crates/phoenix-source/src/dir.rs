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
use crate::loader::{BlobId, Change, Loader, Verdict, is_spec_file};
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
        for (path, (blob, _)) in &files {
            hasher.update(path.as_bytes());
            hasher.update([0]);
            hasher.update(blob.as_bytes());
        }
        let id = RevisionId::new(format!("sha256:{}", hex::encode(hasher.finalize())));
        if self.seen.as_ref() == Some(&id) {
            return Ok(PollOutcome::Unchanged);
        }
        let mut changes: Vec<Change> = files
            .iter()
            .filter(|(path, (blob, _))| self.loader.blob(path) != Some(*blob))
            .map(|(path, (blob, _))| Change {
                path: path.clone(),
                blob: Some(*blob),
            })
            .collect();
        changes.extend(
            self.loader
                .paths()
                .filter(|path| !files.contains_key(*path))
                .map(|path| Change {
                    path: path.to_string(),
                    blob: None,
                }),
        );
        let reparsed = self.loader.update(changes, |path, _| {
            // Each changed file is read once; hand its bytes over instead of copying.
            Ok::<_, SourceError>(
                files
                    .get_mut(path)
                    .and_then(|(_, bytes)| bytes.take())
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

/// What [`scan`] found: path -> (blob id, content when kept), sorted by path.
type Scanned = std::collections::BTreeMap<String, (BlobId, Option<Vec<u8>>)>;

/// Every spec file below `root`: relative path (with `/`) -> (blob id, content), sorted.
/// The content is kept only where `keep(path, blob)` says so (the files the loader must
/// parse); a rescan of an unchanged 100,000-file folder then holds no file content.
fn scan(root: &Path, keep: impl Fn(&str, BlobId) -> bool) -> Result<Scanned, SourceError> {
    let mut files = std::collections::BTreeMap::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let io = |source| SourceError::Io {
            path: dir.clone(),
            source,
        };
        for entry in std::fs::read_dir(&dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                warn!(path = %entry.path().display(), "skipping a file name that is not UTF-8");
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            // Follows symlinks, like a user would expect from a plain folder.
            let metadata = std::fs::metadata(&path).map_err(|source| SourceError::Io {
                path: path.clone(),
                source,
            })?;
            let relative = format!("{prefix}{name}");
            if metadata.is_dir() {
                stack.push((path, format!("{relative}/")));
            } else if metadata.is_file() && is_spec_file(&relative) {
                let bytes = std::fs::read(&path).map_err(|source| SourceError::Io {
                    path: path.clone(),
                    source,
                })?;
                let blob = git2::Oid::hash_object(git2::ObjectType::Blob, &bytes)
                    .map(BlobId::from_oid)
                    .map_err(|_| SourceError::Io {
                        path: path.clone(),
                        source: std::io::Error::other("cannot hash file content"),
                    })?;
                let bytes = keep(&relative, blob).then_some(bytes);
                files.insert(relative, (blob, bytes));
            }
        }
    }
    Ok(files)
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
