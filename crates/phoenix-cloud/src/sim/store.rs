//! The sim cloud on disk: a binary snapshot written atomically, plus an append-only log
//! of JSON-lines records since that snapshot.
//!
//! Layout of `<state_dir>/sim/<name>/`:
//! - `snapshot.bin`: generation G and the whole world (compact binary, see
//!   [`write_snapshot`]); written to a temp file, fsynced, then renamed over.
//! - `log-G.jsonl`: one [`Record`] per line, appended and fsynced per mutation. A torn
//!   last line (crash mid-write) is ignored and cut off.
//! - `lock`: an advisory file lock held around every operation, so several processes
//!   (the daemon and a test or CLI making out-of-band changes) can share one sim. Each
//!   operation first catches up with what others appended (or reloads after another
//!   process compacted).
//!
//! Compaction (snapshot G+1, new empty log, old log removed) runs when the log holds
//! more than [`COMPACT_AFTER_BYTES`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use phoenix_core::model::InstanceState;

use super::world::{Record, Slot, World};

/// Compact when the log grows past this many bytes.
pub(crate) const COMPACT_AFTER_BYTES: u64 = 32 * 1024 * 1024;

const MAGIC: &[u8; 8] = b"PHXSIM01";
const TRAILER: &[u8; 8] = b"PHXEND01";

/// Why the store failed: an IO error on a path, or a file that does not parse.
#[derive(Debug)]
pub(crate) enum StoreError {
    Io(PathBuf, io::Error),
    Corrupt(PathBuf, String),
}

type Result<T> = std::result::Result<T, StoreError>;

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |e| StoreError::Io(path.to_path_buf(), e)
}

/// The open files of one sim.
#[derive(Debug)]
pub(crate) struct Store {
    dir: PathBuf,
    lock: File,
    generation: u64,
    log: File,
    /// Bytes of the log already applied.
    offset: u64,
}

/// Holds the cross-process lock until dropped (a duplicate handle of the lock file:
/// the lock belongs to the shared open file description).
#[derive(Debug)]
pub(crate) struct Locked(File);

impl Drop for Locked {
    fn drop(&mut self) {
        // Closing the file would release it too; an unlock error leaves nothing to do.
        let _ = self.0.unlock();
    }
}

impl Store {
    /// Open (creating if needed) the sim in `dir` and load its world.
    pub(crate) fn open(dir: &Path) -> Result<(Store, World)> {
        fs::create_dir_all(dir).map_err(io_at(dir))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_at(&lock_path))?;
        lock.lock().map_err(io_at(&lock_path))?;
        let (generation, mut world) = read_snapshot(dir)?;
        let log_path = log_path(dir, generation);
        let log = open_log(&log_path)?;
        let mut store = Store {
            dir: dir.to_path_buf(),
            lock,
            generation,
            log,
            offset: 0,
        };
        let result = store.catch_up(&mut world).and_then(|()| {
            if store.offset > COMPACT_AFTER_BYTES {
                store.compact(&mut world)?;
            }
            Ok(())
        });
        // Replaying the log grew the tables by doubling; most of them stay this size.
        world.shrink();
        // Ignoring unlock errors: the lock dies with the file handle anyway.
        let _ = store.lock.unlock();
        result?;
        Ok((store, world))
    }

    /// Take the cross-process lock and catch up with other writers.
    pub(crate) fn lock_and_sync(&mut self, world: &mut World) -> Result<Locked> {
        let lock_path = self.dir.join("lock");
        let handle = self.lock.try_clone().map_err(io_at(&lock_path))?;
        handle.lock().map_err(io_at(&lock_path))?;
        let guard = Locked(handle);
        let generation = read_generation(&self.dir)?;
        if generation != self.generation {
            let (generation, fresh) = read_snapshot(&self.dir)?;
            *world = fresh;
            self.generation = generation;
            self.log = open_log(&log_path(&self.dir, generation))?;
            self.offset = 0;
        }
        self.catch_up(world)?;
        Ok(guard)
    }

    /// Apply whatever the log holds past `offset`; cut off a torn last line.
    fn catch_up(&mut self, world: &mut World) -> Result<()> {
        let path = log_path(&self.dir, self.generation);
        let len = self.log.metadata().map_err(io_at(&path))?.len();
        if len <= self.offset {
            return Ok(());
        }
        self.log
            .seek(SeekFrom::Start(self.offset))
            .map_err(io_at(&path))?;
        let mut tail = Vec::with_capacity(usize::try_from(len - self.offset).unwrap_or(0));
        (&self.log)
            .take(len - self.offset)
            .read_to_end(&mut tail)
            .map_err(io_at(&path))?;
        let mut consumed = 0usize;
        for line in tail.split_inclusive(|b| *b == b'\n') {
            if line.last() != Some(&b'\n') {
                break; // torn write: not yet (or never) complete
            }
            let record: Record = serde_json::from_slice(line).map_err(|e| {
                StoreError::Corrupt(
                    path.clone(),
                    format!("bad record at byte {}: {e}", self.offset + consumed as u64),
                )
            })?;
            world.apply(&record);
            consumed += line.len();
        }
        self.offset += consumed as u64;
        if self.offset < len {
            // A torn tail from a crashed writer; we hold the lock, so nobody is writing.
            self.log.set_len(self.offset).map_err(io_at(&path))?;
        }
        Ok(())
    }

    /// Append records (lock held, world already updated by the caller).
    pub(crate) fn append(&mut self, records: &[Record]) -> Result<()> {
        let path = log_path(&self.dir, self.generation);
        let mut buf = Vec::new();
        for record in records {
            serde_json::to_writer(&mut buf, record).map_err(|e| {
                StoreError::Corrupt(path.clone(), format!("cannot encode record: {e}"))
            })?;
            buf.push(b'\n');
        }
        self.log.seek(SeekFrom::End(0)).map_err(io_at(&path))?;
        self.log.write_all(&buf).map_err(io_at(&path))?;
        self.log.sync_data().map_err(io_at(&path))?;
        self.offset += buf.len() as u64;
        Ok(())
    }

    /// Whether the log has grown enough to be folded into a snapshot.
    pub(crate) fn wants_compaction(&self) -> bool {
        self.offset > COMPACT_AFTER_BYTES
    }

    /// Fold the log into a new snapshot (lock held).
    pub(crate) fn compact(&mut self, world: &mut World) -> Result<()> {
        let next = self.generation + 1;
        *world = rebuild(world);
        let tmp = self.dir.join("snapshot.tmp");
        write_snapshot(&tmp, next, world)?;
        let new_log = log_path(&self.dir, next);
        let log = open_log(&new_log)?;
        log.set_len(0).map_err(io_at(&new_log))?;
        let snapshot = self.dir.join("snapshot.bin");
        fs::rename(&tmp, &snapshot).map_err(io_at(&snapshot))?;
        if let Ok(dir) = File::open(&self.dir) {
            // Make the rename durable; not every platform can fsync a directory.
            let _ = dir.sync_all();
        }
        let old = log_path(&self.dir, self.generation);
        fs::remove_file(&old).map_err(io_at(&old))?;
        self.generation = next;
        self.log = log;
        self.offset = 0;
        Ok(())
    }
}

fn log_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("log-{generation}.jsonl"))
}

fn open_log(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_at(path))
}

/// The generation in the snapshot header (0 without a snapshot).
fn read_generation(dir: &Path) -> Result<u64> {
    let path = dir.join("snapshot.bin");
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(StoreError::Io(path, e)),
    };
    let mut header = [0u8; 16];
    file.read_exact(&mut header).map_err(io_at(&path))?;
    if &header[..8] != MAGIC {
        return Err(StoreError::Corrupt(path, "not a sim snapshot".to_string()));
    }
    Ok(u64::from_le_bytes(
        header[8..16].try_into().expect("8 bytes"),
    ))
}

/// A copy of the world with only what live instances reference.
fn rebuild(world: &World) -> World {
    let mut fresh = World::default();
    fresh.next_id = world.next_id;
    let strings = &world.strings.values;
    for entry in world.entries() {
        let slot = &entry.slot;
        let pairs: Vec<(u32, u32)> = world.tag_sets.values[slot.tag_set as usize]
            .iter()
            .map(|(k, v)| {
                (
                    fresh.string(&strings[*k as usize]),
                    fresh.string(&strings[*v as usize]),
                )
            })
            .collect();
        let groups: Vec<String> = world.sg_sets.values[slot.sg_set as usize]
            .iter()
            .map(|g| strings[*g as usize].to_string())
            .collect();
        let new_slot = Slot {
            tag_set: fresh.intern_tag_pairs_as(pairs, Some(world.tags_of(slot.tag_set))),
            image: fresh.string(&strings[slot.image as usize]),
            instance_type: fresh.string(&strings[slot.instance_type as usize]),
            subnet: if slot.subnet == super::world::NONE {
                super::world::NONE
            } else {
                fresh.string(&strings[slot.subnet as usize])
            },
            sg_set: fresh.intern_sgs(&groups),
            ..*slot
        };
        fresh.push_entry(entry.with_slot(new_slot));
    }
    fresh.shrink();
    fresh
}

fn state_code(state: Option<InstanceState>) -> u8 {
    match state {
        None => 0,
        Some(InstanceState::Pending) => 1,
        Some(InstanceState::Running) => 2,
        Some(InstanceState::Stopping) => 3,
        Some(InstanceState::Stopped) => 4,
        Some(InstanceState::ShuttingDown) => 5,
        Some(InstanceState::Terminated) => 6,
    }
}

fn state_from_code(code: u8) -> Option<Option<InstanceState>> {
    Some(match code {
        0 => None,
        1 => Some(InstanceState::Pending),
        2 => Some(InstanceState::Running),
        3 => Some(InstanceState::Stopping),
        4 => Some(InstanceState::Stopped),
        5 => Some(InstanceState::ShuttingDown),
        6 => Some(InstanceState::Terminated),
        _ => return None,
    })
}

fn len_u32(n: usize) -> [u8; 4] {
    u32::try_from(n)
        .expect("sim tables hold fewer than 4 billion entries")
        .to_le_bytes()
}

/// Write a snapshot: magic, generation, next id, strings, tag sets, security-group
/// sets, then one fixed 45-byte record per instance, then a trailer. Little-endian.
fn write_snapshot(path: &Path, generation: u64, world: &World) -> Result<()> {
    let file = File::create(path).map_err(io_at(path))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut write = || -> io::Result<()> {
        w.write_all(MAGIC)?;
        w.write_all(&generation.to_le_bytes())?;
        w.write_all(&world.next_id.to_le_bytes())?;
        w.write_all(&len_u32(world.strings.values.len()))?;
        for s in &world.strings.values {
            w.write_all(&len_u32(s.len()))?;
            w.write_all(s.as_bytes())?;
        }
        w.write_all(&len_u32(world.tag_sets.values.len()))?;
        for set in &world.tag_sets.values {
            w.write_all(&len_u32(set.len()))?;
            for (k, v) in set {
                w.write_all(&k.to_le_bytes())?;
                w.write_all(&v.to_le_bytes())?;
            }
        }
        w.write_all(&len_u32(world.sg_sets.values.len()))?;
        for set in &world.sg_sets.values {
            w.write_all(&len_u32(set.len()))?;
            for g in set {
                w.write_all(&g.to_le_bytes())?;
            }
        }
        w.write_all(&(world.len() as u64).to_le_bytes())?;
        for s in world.slots() {
            w.write_all(&s.id.to_le_bytes())?;
            for v in [s.tag_set, s.image, s.instance_type, s.subnet, s.sg_set] {
                w.write_all(&v.to_le_bytes())?;
            }
            w.write_all(&s.launched_ms.to_le_bytes())?;
            w.write_all(&s.ready_ms.to_le_bytes())?;
            w.write_all(&[state_code(s.forced_state)])?;
        }
        w.write_all(TRAILER)?;
        w.flush()?;
        w.get_ref().sync_all()
    };
    write().map_err(io_at(path))
}

/// A cursor over snapshot bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.at.checked_add(n)?;
        let out = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(out)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// Read `snapshot.bin` (an empty world at generation 0 when there is none).
fn read_snapshot(dir: &Path) -> Result<(u64, World)> {
    let path = dir.join("snapshot.bin");
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, World::default())),
        Err(e) => return Err(StoreError::Io(path, e)),
    };
    parse_snapshot(&bytes)
        .ok_or_else(|| StoreError::Corrupt(path, "truncated or malformed snapshot".to_string()))
}

fn parse_snapshot(bytes: &[u8]) -> Option<(u64, World)> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(8)? != MAGIC {
        return None;
    }
    let generation = r.u64()?;
    let mut world = World::default();
    world.next_id = r.u64()?;
    for _ in 0..r.u32()? {
        let len = r.u32()? as usize;
        let s = std::str::from_utf8(r.take(len)?).ok()?;
        world.string(s);
    }
    let n_strings = world.strings.values.len() as u32;
    for _ in 0..r.u32()? {
        let n = r.u32()?;
        let mut pairs = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let (k, v) = (r.u32()?, r.u32()?);
            if k >= n_strings || v >= n_strings {
                return None;
            }
            pairs.push((k, v));
        }
        world.intern_tag_pairs(pairs);
    }
    for _ in 0..r.u32()? {
        let n = r.u32()?;
        let mut groups = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let g = r.u32()?;
            if g >= n_strings {
                return None;
            }
            groups.push(g);
        }
        world.intern_sg_ids(groups);
    }
    let n_tag_sets = world.tag_sets.values.len() as u32;
    let n_sg_sets = world.sg_sets.values.len() as u32;
    let n_slots = r.u64()?;
    let mut slots = Vec::with_capacity(usize::try_from(n_slots).ok()?.min(bytes.len() / 45));
    for _ in 0..n_slots {
        let slot = Slot {
            id: r.u64()?,
            tag_set: r.u32()?,
            image: r.u32()?,
            instance_type: r.u32()?,
            subnet: r.u32()?,
            sg_set: r.u32()?,
            launched_ms: r.u64()?,
            ready_ms: r.u64()?,
            forced_state: state_from_code(r.take(1)?[0])?,
        };
        let subnet_ok = slot.subnet == super::world::NONE || slot.subnet < n_strings;
        if slot.tag_set >= n_tag_sets
            || slot.sg_set >= n_sg_sets
            || slot.image >= n_strings
            || slot.instance_type >= n_strings
            || !subnet_ok
        {
            return None;
        }
        slots.push(slot);
    }
    if r.take(8)? != TRAILER || r.at != bytes.len() {
        return None;
    }
    world.extend_slots(slots);
    world.shrink();
    Some((generation, world))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::sim::world::SimChange;

    fn launch(first_id: u64, count: u32, token: &str) -> Record {
        Record::Launch {
            first_id,
            count,
            launched_ms: 10,
            ready_ms: 10,
            image: "ami-1".into(),
            instance_type: "t3.micro".into(),
            subnets: vec!["subnet-a".into()],
            subnet_offset: 0,
            security_groups: vec!["sg-1".into()],
            tags: BTreeMap::from([
                ("phoenix:owner".to_string(), "me".to_string()),
                ("phoenix:launch-token".to_string(), token.to_string()),
            ]),
        }
    }

    fn ids(world: &World) -> Vec<u64> {
        let mut ids: Vec<u64> = world.slots().map(|s| s.id).collect();
        ids.sort();
        ids
    }

    #[test]
    fn log_and_snapshot_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (mut store, mut world) = Store::open(dir.path()).expect("open");
            let records = [launch(1, 4, "a"), Record::Terminate { ids: vec![2] }];
            let _lock = store.lock_and_sync(&mut world).expect("lock");
            for r in &records {
                world.apply(r);
            }
            drop(_lock);
            store.append(&records).expect("append");
        }
        let (mut store, mut world) = Store::open(dir.path()).expect("reopen");
        assert_eq!(ids(&world), vec![1, 3, 4]);
        store.compact(&mut world).expect("compact");
        let record = Record::Modify {
            id: 3,
            change: SimChange::InstanceType("m5.large".into()),
        };
        world.apply(&record);
        store.append(&[record]).expect("append");
        drop(store);
        let (_store, world) = Store::open(dir.path()).expect("reopen after compaction");
        assert_eq!(ids(&world), vec![1, 3, 4]);
        assert_eq!(world.next_id, 5);
        let slot = world.slots().find(|s| s.id == 3).expect("3 lives");
        assert_eq!(
            &*world.strings.values[slot.instance_type as usize],
            "m5.large"
        );
        assert!(!dir.path().join("log-0.jsonl").exists(), "old log removed");
    }

    #[test]
    fn a_torn_last_line_is_cut_off() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (mut store, mut world) = Store::open(dir.path()).expect("open");
            let r = launch(1, 2, "a");
            world.apply(&r);
            store.append(&[r]).expect("append");
        }
        let log = dir.path().join("log-0.jsonl");
        let mut file = OpenOptions::new()
            .append(true)
            .open(&log)
            .expect("open log");
        file.write_all(b"{\"op\":\"terminate\",\"ids\":[1")
            .expect("torn write");
        drop(file);
        let (_store, world) = Store::open(dir.path()).expect("reopen");
        assert_eq!(ids(&world), vec![1, 2]);
        let text = fs::read_to_string(&log).expect("read log");
        assert!(text.ends_with('\n'), "torn tail removed: {text:?}");
    }

    #[test]
    fn a_second_handle_sees_the_first_ones_writes_and_compactions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut a, mut world_a) = Store::open(dir.path()).expect("open a");
        let (mut b, mut world_b) = Store::open(dir.path()).expect("open b");
        {
            let _l = a.lock_and_sync(&mut world_a).expect("lock a");
            let r = launch(1, 3, "a");
            world_a.apply(&r);
            a.append(&[r]).expect("append");
        }
        drop(b.lock_and_sync(&mut world_b).expect("sync b"));
        assert_eq!(ids(&world_b), vec![1, 2, 3]);
        {
            let _l = a.lock_and_sync(&mut world_a).expect("lock a");
            a.compact(&mut world_a).expect("compact");
            let r = Record::Terminate { ids: vec![1] };
            world_a.apply(&r);
            a.append(&[r]).expect("append");
        }
        drop(b.lock_and_sync(&mut world_b).expect("sync b"));
        assert_eq!(ids(&world_b), vec![2, 3]);
    }

    #[test]
    fn corrupt_snapshots_are_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(
            dir.path().join("snapshot.bin"),
            b"PHXSIM01\0\0\0\0\0\0\0\0garbage",
        )
        .expect("write");
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::Corrupt(..))
        ));
    }
}
