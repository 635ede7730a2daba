//! Phoenix's durable state: an embedded SQLite database at `<state dir>/phoenix.db`.
//!
//! The store holds what must survive a restart of the daemon: the revisions it has seen
//! (accepted or rejected), plans and their steps (with the "write intent before acting,
//! mark done after" protocol the executor's crash recovery depends on), drift incidents,
//! the alert outbox, per-group history of generations, hashes that failed and were rolled
//! back, change-window overrides, and the planner's memory as a JSON blob. The schema and the durability contract
//! are documented in `docs/store.md`.
//!
//! # Using it
//!
//! [`Store`] owns one `rusqlite::Connection`. It is `Send` but not `Sync`, and every call
//! is blocking disk IO: the daemon keeps the one `Store` on a dedicated thread or moves it
//! into `tokio::task::spawn_blocking` for each batch of calls, never calling it directly
//! from an async task. Readers such as the HTTP API do not query the store; they read a
//! snapshot the reconcile loop publishes. Anyone may read the file concurrently with the
//! `sqlite3` CLI (WAL mode lets readers and the writer proceed together).
//!
//! The store never reads the clock: every method that records a time takes `now` (or the
//! time to record) from the caller, so tests are deterministic.
//!
//! Architecture invariant: phoenix-store is the only crate that links SQLite, and the
//! only one that knows the database schema.

mod error;
mod history;
mod incidents;
mod kv;
mod outbox;
mod overrides;
mod plans;
mod revisions;
mod schema;
mod sql;
mod types;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use phoenix_core::GroupName;
use rusqlite::Connection;

pub use error::StoreError;
pub use history::{FailedHash, GenerationOutcome, HistoryEntry};
pub use incidents::{IncidentOpening, IncidentRecord, NewIncident};
pub use kv::PLANNER_MEMORY_KEY;
pub use outbox::{NewAlert, OutboxCounts, OutboxEntry};
pub use overrides::{NewWindowOverride, WindowOverrideRecord};
pub use plans::{NewPlan, NewStep, PlanKind, PlanRecord, PlanWithSteps, StepIntent, StepRecord};
pub use revisions::{RevisionError, RevisionRecord, RevisionVerdict, SeenRevision};
pub use schema::SCHEMA_VERSION;
pub use types::{DeliveryId, IncidentId, PlanId, PlanStatus, StepAction, StepStatus, UnknownValue};

/// The database file name inside the state directory.
pub const DB_FILE_NAME: &str = "phoenix.db";

/// Result alias for store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// How hard SQLite works to make a commit durable (`PRAGMA synchronous`).
///
/// In WAL mode both settings survive a crash of the Phoenix process: a commit is in the
/// WAL file (in the OS page cache) before `COMMIT` returns. They differ only when the
/// whole machine stops (kernel panic, power loss): with `Normal` the last commits before
/// the stop may be lost (the database stays consistent); with `Full` the WAL is fsynced
/// on every commit and nothing committed is lost, at the price of one fsync per commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// `PRAGMA synchronous = NORMAL`: the default; see `docs/store.md` for why it is enough.
    #[default]
    Normal,
    /// `PRAGMA synchronous = FULL`: fsync the WAL on every commit.
    Full,
}

impl Synchronous {
    fn pragma_value(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

/// Options for [`Store::open`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How long a statement waits for a lock held by another connection (for example a
    /// `sqlite3` shell in the middle of a write) before failing. Default 5 s.
    pub busy_timeout: Duration,
    /// Commit durability. Default [`Synchronous::Normal`].
    pub synchronous: Synchronous,
    /// How many generations of history to keep per group. Default 20; at least 1.
    pub history_keep: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(5),
            synchronous: Synchronous::Normal,
            history_keep: 20,
        }
    }
}

/// The durable state store. See the crate documentation for how to call it.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    /// The database file, or `None` for an in-memory store.
    path: Option<PathBuf>,
    options: StoreOptions,
    /// Groups whose history this connection changed since the last
    /// [`Store::take_history_changes`].
    history_changed: BTreeSet<GroupName>,
}

/// Issue 17: the state folder is created `0700` and the database `0600` (SQLite gives
/// its `-wal` and `-shm` files the database's mode), so other local users cannot read
/// plans, incidents or alert payloads.
mod private {
    use std::io;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
    use std::path::Path;

    /// Create `dir` and missing parents with mode `0700` (an existing folder is kept).
    pub(super) fn create_dir(dir: &Path) -> io::Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }

    /// Create `file` with mode `0600` if missing; an existing one is made `0600`.
    pub(super) fn create_file(file: &Path) -> io::Result<()> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(file)?;
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
    }
}

impl Store {
    /// Open (creating if needed) the store in `state_dir`, which is created when missing,
    /// and bring its schema up to date.
    ///
    /// Fails with [`StoreError::SchemaTooNew`] when the database was written by a newer
    /// Phoenix whose schema this binary does not know.
    pub fn open(state_dir: &Path, options: StoreOptions) -> Result<Store> {
        private::create_dir(state_dir).map_err(|source| StoreError::CreateDir {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let path = state_dir.join(DB_FILE_NAME);
        private::create_file(&path).map_err(|source| StoreError::CreateDir {
            path: path.clone(),
            source,
        })?;
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(open_err)?;
        configure(&conn, &options, Some(&path))?;
        let mut store = Store {
            conn,
            path: Some(path),
            options,
            history_changed: BTreeSet::new(),
        };
        schema::migrate(&mut store.conn, store.path.as_deref())?;
        Ok(store)
    }

    /// A store that lives in memory only, with the same schema: for tests of code that
    /// uses the store and does not care about durability.
    pub fn open_in_memory(options: StoreOptions) -> Result<Store> {
        let open_err = |source| StoreError::Open {
            path: PathBuf::from(":memory:"),
            source,
        };
        let conn = Connection::open_in_memory().map_err(open_err)?;
        configure(&conn, &options, None)?;
        let mut store = Store {
            conn,
            path: None,
            options,
            history_changed: BTreeSet::new(),
        };
        schema::migrate(&mut store.conn, None)?;
        Ok(store)
    }

    /// The database file, or `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Start a write transaction. IMMEDIATE takes the write lock up front, so a
    /// transaction that reads then writes never fails half-way with SQLITE_BUSY.
    pub(crate) fn begin(&mut self, operation: &'static str) -> Result<rusqlite::Transaction<'_>> {
        self.conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::sqlite(operation))
    }

    /// The schema version of the open database (always [`SCHEMA_VERSION`] after `open`).
    pub fn schema_version(&self) -> Result<i64> {
        schema::user_version(&self.conn).map_err(|source| StoreError::Sqlite {
            operation: "read schema version",
            source,
        })
    }
}

/// Connection settings applied on every open. `path` is `None` for in-memory databases,
/// which have no journal file and so no WAL.
fn configure(conn: &Connection, options: &StoreOptions, path: Option<&Path>) -> Result<()> {
    let shown = || path.map_or_else(|| PathBuf::from(":memory:"), Path::to_path_buf);
    let open_err = |source| StoreError::Open {
        path: shown(),
        source,
    };
    conn.busy_timeout(options.busy_timeout).map_err(open_err)?;
    if path.is_some() {
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            // The file system refused WAL (for example some network file systems): report
            // it rather than silently running with different durability and locking.
            return Err(StoreError::WalUnavailable {
                path: shown(),
                mode,
            });
        }
    }
    conn.pragma_update(None, "synchronous", options.synchronous.pragma_value())
        .map_err(open_err)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(open_err)?;
    Ok(())
}
