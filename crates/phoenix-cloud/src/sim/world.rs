//! The sim cloud's in-memory state: a dense table of compact instance records whose
//! strings (images, types, subnets, tags) are interned, so 300,000 instances in
//! 100,000 groups take about 120 MB (strings and built views included) and a full scan
//! takes milliseconds.
//!
//! The table is kept sorted by instance id (ids only grow), so an id is found by
//! bisection without a separate index; a terminated instance is only marked removed and
//! the table is swept once enough of it is. Everything a listing hands out (the `i-…`
//! id, the address, each tag and security-group set) is built once and kept here, so
//! listing costs no allocation per instance besides the list itself, and two listings
//! share all their strings.
//!
//! Everything here is deterministic: the same records applied in the same order give
//! the same world. Wall-clock times are passed in as milliseconds since the epoch.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hashbrown::HashTable;
use phoenix_core::Text;
use phoenix_core::model::{Instance, InstanceHealth, InstanceState, Tags};
use phoenix_core::tags;
use serde::{Deserialize, Serialize};

/// "No subnet" in a slot.
pub(crate) const NONE: u32 = u32::MAX;

/// Interns values of one type; ids are indexes into `values`.
///
/// The lookup table holds only ids (4 bytes each) and hashes the values where they are
/// stored, so each value is kept once: a `HashMap<T, u32>` would keep a second copy of
/// every value (for tag sets, a second heap allocation each).
#[derive(Debug, Default)]
pub(crate) struct Interner<T: Eq + Hash> {
    pub(crate) values: Vec<T>,
    ids: HashTable<u32>,
    hasher: RandomState,
}

impl<T: Eq + Hash> Interner<T> {
    pub(crate) fn intern(&mut self, value: T) -> u32 {
        let hash = self.hasher.hash_one(&value);
        let values = &self.values;
        if let Some(id) = self.ids.find(hash, |id| values[*id as usize] == value) {
            return *id;
        }
        let id = u32::try_from(self.values.len()).expect("fewer than 4 billion distinct values");
        self.values.push(value);
        let (values, hasher) = (&self.values, &self.hasher);
        self.ids
            .insert_unique(hash, id, |id| hasher.hash_one(&values[*id as usize]));
        id
    }

    /// Give back spare capacity (after loading, when growth has mostly stopped).
    fn shrink(&mut self) {
        shrink_with_headroom(&mut self.values);
        let (values, hasher) = (&self.values, &self.hasher);
        self.ids
            .shrink_to(0, |id| hasher.hash_one(&values[*id as usize]));
    }

    pub(crate) fn get<Q>(&self, value: &Q) -> Option<u32>
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        // `Borrow` promises that `Q` hashes as `T` does.
        let hash = self.hasher.hash_one(value);
        self.ids
            .find(hash, |id| self.values[*id as usize].borrow() == value)
            .copied()
    }
}

/// One instance as the log and the snapshot know it, 48 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) id: u64,
    pub(crate) tag_set: u32,
    pub(crate) image: u32,
    pub(crate) instance_type: u32,
    pub(crate) subnet: u32,
    pub(crate) sg_set: u32,
    pub(crate) launched_ms: u64,
    /// When a launched instance turns from pending to running.
    pub(crate) ready_ms: u64,
    /// A state set out of band (`stopped`, ...), or `None` for the launch lifecycle.
    pub(crate) forced_state: Option<InstanceState>,
}

/// A slot in the world's table, with the `i-…` id that listings hand out, made once
/// when the slot is created so that every listing (and the snapshot built from it)
/// shares it.
///
/// A removed entry (terminated, waiting for [`World::sweep`]) has `slot.tag_set ==
/// NONE`: no live slot can, since tag-set ids index [`World::tag_sets`].
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) slot: Slot,
    id: Text,
}

impl Entry {
    fn new(slot: Slot) -> Self {
        Self {
            id: format_id(slot.id).into(),
            slot,
        }
    }

    /// The same instance (same id) with other fields, keeping the shared strings.
    pub(crate) fn with_slot(&self, slot: Slot) -> Self {
        debug_assert_eq!(slot.id, self.slot.id, "an entry keeps its id");
        Self {
            slot,
            id: self.id.clone(),
        }
    }

    fn is_removed(&self) -> bool {
        self.slot.tag_set == NONE
    }
}
/// An out-of-band change to one sim instance (what someone might do in a console).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimChange {
    /// ModifyInstanceAttribute instanceType.
    InstanceType(String),
    /// Swap the image (impossible in EC2, handy for drift tests).
    Image(String),
    /// Replace the security groups.
    SecurityGroups(Vec<String>),
    /// Move to another subnet (or none).
    Subnet(Option<String>),
    /// Force a state: `stopped`, `stopping`, `running`, ... (`terminated` terminates).
    State(InstanceState),
    /// Set a tag.
    SetTag {
        /// Key.
        key: String,
        /// Value.
        value: String,
    },
    /// Remove a tag.
    RemoveTag(String),
}

/// One entry of the sim's append-only log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Record {
    /// `count` instances with ids `first_id..first_id+count`.
    Launch {
        first_id: u64,
        count: u32,
        launched_ms: u64,
        ready_ms: u64,
        image: String,
        instance_type: String,
        /// Instance `k` goes to `subnets[(subnet_offset + k) % len]`; empty: none.
        subnets: Vec<String>,
        subnet_offset: u32,
        security_groups: Vec<String>,
        tags: BTreeMap<String, String>,
    },
    /// Instances gone.
    Terminate { ids: Vec<u64> },
    /// An out-of-band change.
    Modify { id: u64, change: SimChange },
}

/// The whole sim cloud.
#[derive(Debug, Default)]
pub(crate) struct World {
    pub(crate) next_id: u64,
    pub(crate) strings: Interner<Text>,
    /// Sorted (key, value) string ids.
    pub(crate) tag_sets: Interner<Vec<(u32, u32)>>,
    /// Per tag set: the owner and launch-token string ids (`NONE` when absent).
    tag_set_keys: Vec<(u32, u32)>,
    /// Per tag set: the tags as listings hand them out.
    tag_views: Vec<Tags>,
    /// Sorted string ids.
    pub(crate) sg_sets: Interner<Vec<u32>>,
    /// Per security-group set: the groups as listings hand them out.
    sg_views: Vec<Arc<[Text]>>,
    /// Sorted by id, ids unique; includes `removed` removed entries until the next sweep.
    entries: Vec<Entry>,
    removed: usize,
}

impl World {
    pub(crate) fn string(&mut self, s: &str) -> u32 {
        if let Some(id) = self.strings.get(s) {
            return id;
        }
        self.strings.intern(Text::from(s))
    }

    /// The id of an already interned string.
    pub(crate) fn lookup(&self, s: &str) -> Option<u32> {
        self.strings.get(s)
    }

    fn str_of(&self, id: u32) -> &str {
        &self.strings.values[id as usize]
    }

    fn text_of(&self, id: u32) -> Text {
        self.strings.values[id as usize].clone()
    }

    pub(crate) fn intern_tags(&mut self, tags: &BTreeMap<String, String>) -> u32 {
        let pairs: Vec<(u32, u32)> = tags
            .iter()
            .map(|(k, v)| (self.string(k), self.string(v)))
            .collect();
        self.intern_tag_pairs(pairs)
    }

    pub(crate) fn intern_tag_pairs(&mut self, pairs: Vec<(u32, u32)>) -> u32 {
        self.intern_tag_pairs_as(pairs, None)
    }

    /// Intern a tag set; when it is new, `built` (the same tags, already built by
    /// another world) is shared instead of building them again.
    pub(crate) fn intern_tag_pairs_as(
        &mut self,
        mut pairs: Vec<(u32, u32)>,
        built: Option<&Tags>,
    ) -> u32 {
        pairs.sort_by(|a, b| self.str_of(a.0).cmp(self.str_of(b.0)));
        let id = self.tag_sets.intern(pairs);
        if id as usize == self.tag_set_keys.len() {
            let owner = self.strings.get(tags::OWNER);
            let token = self.strings.get(tags::LAUNCH_TOKEN);
            let find = |key: Option<u32>, pairs: &[(u32, u32)]| {
                key.and_then(|k| pairs.iter().find(|(pk, _)| *pk == k).map(|(_, v)| *v))
                    .unwrap_or(NONE)
            };
            let pairs = &self.tag_sets.values[id as usize];
            self.tag_set_keys
                .push((find(owner, pairs), find(token, pairs)));
            let tags = match built {
                Some(tags) => tags.clone(),
                None => pairs
                    .iter()
                    .map(|(k, v)| (self.text_of(*k), self.text_of(*v)))
                    .collect(),
            };
            self.tag_views.push(tags);
        }
        id
    }

    pub(crate) fn intern_sgs(&mut self, groups: &[String]) -> u32 {
        let mut ids: Vec<u32> = groups.iter().map(|g| self.string(g)).collect();
        ids.sort_by(|a, b| self.str_of(*a).cmp(self.str_of(*b)));
        ids.dedup();
        self.intern_sg_ids(ids)
    }

    /// Intern a security-group set given as sorted, unique string ids.
    pub(crate) fn intern_sg_ids(&mut self, ids: Vec<u32>) -> u32 {
        let id = self.sg_sets.intern(ids);
        if id as usize == self.sg_views.len() {
            let view = self.sg_sets.values[id as usize]
                .iter()
                .map(|g| self.text_of(*g))
                .collect();
            self.sg_views.push(view);
        }
        id
    }

    /// The tags of a tag set, as listings hand them out.
    pub(crate) fn tags_of(&self, tag_set: u32) -> &Tags {
        &self.tag_views[tag_set as usize]
    }

    /// How many live instances there are.
    pub(crate) fn len(&self) -> usize {
        self.entries.len() - self.removed
    }

    /// Every live entry, by id.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &Entry> + Clone {
        self.entries.iter().filter(|e| !e.is_removed())
    }

    /// Every live slot, by id.
    pub(crate) fn slots(&self) -> impl Iterator<Item = &Slot> + Clone {
        self.entries().map(|e| &e.slot)
    }

    /// Where `id` is or would go in `entries` (removed entries included). Launches
    /// append, so the last entry is checked before bisecting.
    fn place(&self, id: u64) -> Result<usize, usize> {
        match self.entries.last() {
            None => Err(0),
            Some(last) if last.slot.id < id => Err(self.entries.len()),
            Some(_) => self.entries.binary_search_by_key(&id, |e| e.slot.id),
        }
    }

    /// The index of the live entry `id`.
    fn position(&self, id: u64) -> Option<usize> {
        let at = self.entries.binary_search_by_key(&id, |e| e.slot.id).ok()?;
        (!self.entries[at].is_removed()).then_some(at)
    }

    /// The live entry `id`.
    pub(crate) fn get(&self, id: u64) -> Option<&Entry> {
        self.position(id).map(|at| &self.entries[at])
    }

    pub(crate) fn slot_mut(&mut self, id: u64) -> Option<&mut Slot> {
        let at = self.position(id)?;
        Some(&mut self.entries[at].slot)
    }

    pub(crate) fn contains(&self, id: u64) -> bool {
        self.position(id).is_some()
    }

    /// Add (or overwrite) the slot with `slot.id`.
    pub(crate) fn push_slot(&mut self, slot: Slot) {
        self.next_id = self.next_id.max(slot.id + 1);
        match self.place(slot.id) {
            Ok(at) => {
                if self.entries[at].is_removed() {
                    self.removed -= 1;
                }
                self.entries[at].slot = slot;
            }
            Err(at) => self.entries.insert(at, Entry::new(slot)),
        }
    }

    /// Add slots in any order (a snapshot written before the table was kept sorted
    /// lists them as they were stored); a later slot with the same id wins.
    pub(crate) fn extend_slots(&mut self, mut slots: Vec<Slot>) {
        // Stable, and linear on the already sorted input that newer snapshots hold.
        slots.sort_by_key(|s| s.id);
        self.entries.reserve_exact(slots.len());
        for slot in slots {
            self.push_slot(slot);
        }
    }

    /// Add (or overwrite) an entry, keeping its strings.
    pub(crate) fn push_entry(&mut self, entry: Entry) {
        self.next_id = self.next_id.max(entry.slot.id + 1);
        match self.place(entry.slot.id) {
            Ok(at) => {
                if self.entries[at].is_removed() {
                    self.removed -= 1;
                }
                self.entries[at] = entry;
            }
            Err(at) => self.entries.insert(at, entry),
        }
    }

    /// Mark `id` removed; sweep once an eighth of the table is removed, so a run of
    /// single terminations costs O(1) amortized per instance instead of a shift each.
    fn remove(&mut self, id: u64) {
        if let Some(at) = self.position(id) {
            self.entries[at].slot.tag_set = NONE;
            self.removed += 1;
            if self.removed * 8 > self.entries.len() {
                self.sweep();
            }
        }
    }

    /// Drop removed entries.
    pub(crate) fn sweep(&mut self) {
        if self.removed > 0 {
            self.entries.retain(|e| !e.is_removed());
            self.removed = 0;
        }
    }

    /// Drop removed entries and give back spare capacity, keeping a little room to
    /// grow: for after loading, when the tables are as big as they will mostly get.
    pub(crate) fn shrink(&mut self) {
        self.sweep();
        shrink_with_headroom(&mut self.entries);
        self.strings.shrink();
        self.tag_sets.shrink();
        self.sg_sets.shrink();
        shrink_with_headroom(&mut self.tag_set_keys);
        shrink_with_headroom(&mut self.tag_views);
        shrink_with_headroom(&mut self.sg_views);
    }

    /// Apply one log record.
    pub(crate) fn apply(&mut self, record: &Record) {
        match record {
            Record::Launch {
                first_id,
                count,
                launched_ms,
                ready_ms,
                image,
                instance_type,
                subnets,
                subnet_offset,
                security_groups,
                tags,
            } => {
                let tag_set = self.intern_tags(tags);
                let image = self.string(image);
                let instance_type = self.string(instance_type);
                let sg_set = self.intern_sgs(security_groups);
                let subnets: Vec<u32> = subnets.iter().map(|s| self.string(s)).collect();
                for k in 0..*count {
                    let subnet = if subnets.is_empty() {
                        NONE
                    } else {
                        subnets[(*subnet_offset as usize + k as usize) % subnets.len()]
                    };
                    self.push_slot(Slot {
                        id: first_id + u64::from(k),
                        tag_set,
                        image,
                        instance_type,
                        subnet,
                        sg_set,
                        launched_ms: *launched_ms,
                        ready_ms: *ready_ms,
                        forced_state: None,
                    });
                }
            }
            Record::Terminate { ids } => {
                for id in ids {
                    self.remove(*id);
                }
            }
            Record::Modify { id, change } => self.modify(*id, change),
        }
    }

    fn modify(&mut self, id: u64, change: &SimChange) {
        if !self.contains(id) {
            return;
        }
        if let SimChange::State(InstanceState::Terminated) = change {
            self.remove(id);
            return;
        }
        let new_value = match change {
            SimChange::InstanceType(t) | SimChange::Image(t) => self.string(t),
            SimChange::SecurityGroups(groups) => self.intern_sgs(groups),
            SimChange::Subnet(Some(s)) => self.string(s),
            SimChange::Subnet(None) => NONE,
            SimChange::SetTag { key, value } => {
                let (k, v) = (self.string(key), self.string(value));
                let old = self.slot_mut(id).map(|s| s.tag_set).unwrap_or_default();
                let mut pairs = self.tag_sets.values[old as usize].clone();
                pairs.retain(|(pk, _)| *pk != k);
                pairs.push((k, v));
                self.intern_tag_pairs(pairs)
            }
            SimChange::RemoveTag(key) => {
                let k = self.string(key);
                let old = self.slot_mut(id).map(|s| s.tag_set).unwrap_or_default();
                let mut pairs = self.tag_sets.values[old as usize].clone();
                pairs.retain(|(pk, _)| *pk != k);
                self.intern_tag_pairs(pairs)
            }
            SimChange::State(_) => NONE,
        };
        let Some(slot) = self.slot_mut(id) else {
            return;
        };
        match change {
            SimChange::InstanceType(_) => slot.instance_type = new_value,
            SimChange::Image(_) => slot.image = new_value,
            SimChange::SecurityGroups(_) => slot.sg_set = new_value,
            SimChange::Subnet(_) => slot.subnet = new_value,
            SimChange::SetTag { .. } | SimChange::RemoveTag(_) => slot.tag_set = new_value,
            SimChange::State(state) => slot.forced_state = Some(*state),
        }
    }

    /// Live entries whose owner tag is `owner` (and, if given, whose launch token is
    /// `token`), by id.
    pub(crate) fn select(
        &self,
        owner: &str,
        token: Option<&str>,
    ) -> impl Iterator<Item = &Entry> + Clone {
        let owner = self.strings.get(owner);
        let token = token.map(|t| self.strings.get(t));
        // An owner or token nobody has means no match: scan nothing.
        let known = owner.is_some() && token.is_none_or(|t| t.is_some());
        let scan = if known { &self.entries[..] } else { &[] };
        let owner = owner.unwrap_or(NONE);
        let token = token.flatten();
        scan.iter().filter(move |e| {
            if e.is_removed() {
                return false;
            }
            let (o, t) = self.tag_set_keys[e.slot.tag_set as usize];
            o == owner && token.is_none_or(|want| want == t)
        })
    }

    /// A slot's state at `now_ms`.
    pub(crate) fn state(slot: &Slot, now_ms: u64) -> InstanceState {
        match slot.forced_state {
            Some(state) => state,
            None if now_ms < slot.ready_ms => InstanceState::Pending,
            None => InstanceState::Running,
        }
    }

    /// A slot's health at `now_ms`, given its state then.
    pub(crate) fn health(
        slot: &Slot,
        state: InstanceState,
        unhealthy_images: &[u32],
    ) -> InstanceHealth {
        match state {
            InstanceState::Running if unhealthy_images.contains(&slot.image) => {
                InstanceHealth::Unhealthy
            }
            InstanceState::Running => InstanceHealth::Healthy,
            InstanceState::Pending => InstanceHealth::Unknown,
            _ => InstanceHealth::Unhealthy,
        }
    }

    /// The provider-neutral view of an entry. It allocates nothing: every string and
    /// set in it is shared with the world (and with every other view of it).
    pub(crate) fn view(&self, entry: &Entry, now_ms: u64, unhealthy_images: &[u32]) -> Instance {
        let slot = &entry.slot;
        let state = Self::state(slot, now_ms);
        Instance {
            id: entry.id.clone(),
            state,
            health: Self::health(slot, state, unhealthy_images),
            image: self.text_of(slot.image),
            instance_type: self.text_of(slot.instance_type),
            subnet_id: (slot.subnet != NONE).then(|| self.text_of(slot.subnet)),
            security_group_ids: self.sg_views[slot.sg_set as usize].clone(),
            launch_time: Some(UNIX_EPOCH + Duration::from_millis(slot.launched_ms)),
            private_ip: Some(private_ip(entry.slot.id)),
            tags: self.tags_of(slot.tag_set).clone(),
        }
    }
}

/// Give back a vector's spare capacity but for a little room (1/32) to grow, so the
/// next push does not double a table that has just been trimmed.
fn shrink_with_headroom<T>(v: &mut Vec<T>) {
    v.shrink_to(v.len() + v.len() / 32);
}

/// `i-` and 17 hex digits, like EC2. (Hand-rolled: loading a sim formats one per
/// instance.)
pub(crate) fn format_id(id: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(19);
    out.push_str("i-");
    for shift in (0..17).rev() {
        // The 17th digit (bits 64..68) is always 0 for a u64.
        let digit = if shift == 16 {
            0
        } else {
            (id >> (shift * 4)) & 0xf
        };
        out.push(char::from(HEX[digit as usize]));
    }
    out
}

/// The numeric id behind an `i-…` id, if it is one of ours.
pub(crate) fn parse_id(id: &str) -> Option<u64> {
    let hex = id.strip_prefix("i-")?;
    if hex.len() != 17 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// A stable private address in 10.0.0.0/8 derived from the id.
fn private_ip(id: u64) -> Ipv4Addr {
    let [_, a, b, c] = ((id & 0x00ff_ffff) as u32).to_be_bytes();
    Ipv4Addr::new(10, a, b, c)
}

/// Milliseconds since the epoch.
pub(crate) fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(first_id: u64, count: u32, owner: &str, token: &str) -> Record {
        Record::Launch {
            first_id,
            count,
            launched_ms: 1_000,
            ready_ms: 2_000,
            image: "ami-1".into(),
            instance_type: "t3.micro".into(),
            subnets: vec!["subnet-a".into(), "subnet-b".into()],
            subnet_offset: 1,
            security_groups: vec!["sg-2".into(), "sg-1".into()],
            tags: BTreeMap::from([
                (tags::OWNER.to_string(), owner.to_string()),
                (tags::LAUNCH_TOKEN.to_string(), token.to_string()),
            ]),
        }
    }

    #[test]
    fn launch_select_modify_terminate() {
        let mut world = World::default();
        world.apply(&launch(1, 3, "me", "t1"));
        world.apply(&launch(4, 2, "other", "t1"));
        assert_eq!(world.select("me", None).count(), 3);
        assert_eq!(world.select("me", Some("t1")).count(), 3);
        assert_eq!(world.select("me", Some("t2")).count(), 0);
        assert_eq!(world.select("nobody", None).count(), 0);

        let first = world.select("me", None).next().expect("one of mine");
        let view = world.view(first, 1_500, &[]);
        assert_eq!(view.id, "i-00000000000000001");
        assert_eq!(view.state, InstanceState::Pending);
        assert_eq!(view.subnet_id.as_deref(), Some("subnet-b"));
        assert_eq!(&*view.security_group_ids, ["sg-1", "sg-2"]);

        world.apply(&Record::Modify {
            id: 2,
            change: SimChange::InstanceType("m5.large".into()),
        });
        world.apply(&Record::Modify {
            id: 2,
            change: SimChange::SetTag {
                key: "env".into(),
                value: "x".into(),
            },
        });
        world.apply(&Record::Terminate { ids: vec![1, 99] });
        let mine: Vec<&Entry> = world.select("me", None).collect();
        assert_eq!(mine.len(), 2);
        let two = mine
            .iter()
            .find(|e| e.slot.id == 2)
            .expect("instance 2 is alive");
        let view = world.view(two, 5_000, &[]);
        assert_eq!(view.instance_type, "m5.large");
        assert_eq!(view.state, InstanceState::Running);
        assert_eq!(view.tag("env"), Some("x"));
        assert_eq!(view.owner(), Some("me"), "owner survives a tag change");
        assert_eq!(world.next_id, 6);
    }

    #[test]
    fn ids_and_addresses_format_like_ec2() {
        assert_eq!(format_id(0xabc), "i-00000000000000abc");
        assert_eq!(format_id(u64::MAX), "i-0ffffffffffffffff");
        assert_eq!(private_ip(0x01_0a_ff).to_string(), "10.1.10.255");
        assert_eq!(private_ip(7).to_string(), "10.0.0.7");
        assert_eq!(private_ip(0x64_00_09).to_string(), "10.100.0.9");
    }

    #[test]
    fn ids_round_trip() {
        assert_eq!(parse_id(&format_id(0xabc)), Some(0xabc));
        assert_eq!(parse_id("i-123"), None);
        assert_eq!(parse_id("vol-00000000000000001"), None);
    }

    /// The world's live instances as (id, instance type, owner), by id.
    fn live(world: &World) -> Vec<(u64, String, String)> {
        world
            .entries()
            .map(|e| {
                let view = world.view(e, 0, &[]);
                assert_eq!(view.id, format_id(e.slot.id));
                assert_eq!(view.private_ip, Some(private_ip(e.slot.id)));
                let owner = view.owner().expect("owned").to_string();
                (e.slot.id, view.instance_type.to_string(), owner)
            })
            .collect()
    }

    #[test]
    fn lookups_stay_right_through_terminations_modifications_and_sweeps() {
        let mut world = World::default();
        // The model: id -> (instance type, owner).
        let mut model: BTreeMap<u64, (String, String)> = BTreeMap::new();
        let mut next = 1u64;
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut draw = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        for round in 0..400 {
            let owner = format!("o{}", round % 7);
            match draw(4) {
                0 | 1 => {
                    let count = 1 + draw(20) as u32;
                    world.apply(&launch(next, count, &owner, "t"));
                    for id in next..next + u64::from(count) {
                        model.insert(id, ("t3.micro".into(), owner.clone()));
                    }
                    next += u64::from(count);
                }
                2 => {
                    // A batch of ids, some gone already, some repeated.
                    let ids: Vec<u64> = (0..1 + draw(30)).map(|_| 1 + draw(next)).collect();
                    world.apply(&Record::Terminate { ids: ids.clone() });
                    for id in ids {
                        model.remove(&id);
                    }
                }
                _ => {
                    let id = 1 + draw(next);
                    let kind = format!("m{}.large", draw(5));
                    world.apply(&Record::Modify {
                        id,
                        change: SimChange::InstanceType(kind.clone()),
                    });
                    if let Some(entry) = model.get_mut(&id) {
                        entry.0 = kind;
                    }
                }
            }
            assert_eq!(world.len(), model.len(), "round {round}");
            for probe in 0..next + 2 {
                assert_eq!(world.contains(probe), model.contains_key(&probe));
                assert_eq!(
                    world.get(probe).map(|e| e.slot.id),
                    model.get(&probe).map(|_| probe)
                );
            }
        }
        let want: Vec<(u64, String, String)> = model
            .into_iter()
            .map(|(id, (kind, owner))| (id, kind, owner))
            .collect();
        assert_eq!(live(&world), want);
        let mine: Vec<u64> = world.select("o3", None).map(|e| e.slot.id).collect();
        let want_mine: Vec<u64> = want
            .iter()
            .filter(|(_, _, o)| o == "o3")
            .map(|(id, ..)| *id)
            .collect();
        assert_eq!(mine, want_mine, "selected by id");
        world.shrink();
        assert_eq!(live(&world), want, "shrinking changes nothing");
        assert_eq!(world.next_id, next.max(1));
    }

    #[test]
    fn a_terminated_id_launched_again_comes_back_once() {
        let mut world = World::default();
        world.apply(&launch(1, 3, "me", "t1"));
        world.apply(&Record::Terminate { ids: vec![2] });
        assert!(!world.contains(2));
        world.apply(&launch(2, 1, "other", "t2"));
        assert_eq!(world.len(), 3);
        let ids: Vec<u64> = world.slots().map(|s| s.id).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(world.select("other", None).count(), 1);
    }

    #[test]
    fn slots_in_any_order_load_sorted_and_the_last_copy_wins() {
        let mut source = World::default();
        source.apply(&launch(1, 5, "me", "t1"));
        source.apply(&Record::Terminate { ids: vec![2] });
        source.apply(&launch(2, 1, "me", "t1"));
        let mut slots: Vec<Slot> = source.slots().copied().collect();
        // As an older snapshot might list them, after swap-removals.
        slots.swap(0, 4);
        slots.swap(1, 3);
        let mut again = slots[2];
        again.ready_ms = 9_999;
        slots.push(again);
        let mut loaded = World::default();
        // Interns the same strings and sets, in the same order, as `source` did.
        loaded.apply(&launch(1, 0, "me", "t1"));
        loaded.extend_slots(slots);
        let ids: Vec<u64> = loaded.slots().map(|s| s.id).collect();
        assert_eq!(ids, [1, 2, 3, 4, 5]);
        assert_eq!(loaded.get(3).expect("3").slot.ready_ms, 9_999);
        assert_eq!(loaded.len(), 5);
    }

    #[test]
    fn listings_share_their_strings() {
        let mut world = World::default();
        world.apply(&launch(1, 2, "me", "t1"));
        let first: Vec<Instance> = world
            .select("me", None)
            .map(|e| world.view(e, 0, &[]))
            .collect();
        let second: Vec<Instance> = world
            .select("me", None)
            .map(|e| world.view(e, 0, &[]))
            .collect();
        for (a, b) in first.iter().zip(&second) {
            assert_eq!(a, b);
            assert!(std::ptr::eq(a.id.as_str(), b.id.as_str()), "one id string");
            assert!(a.tags == b.tags && a.tags.get(tags::OWNER) == Some("me"));
        }
        assert!(Arc::ptr_eq(
            &first[0].security_group_ids,
            &second[1].security_group_ids
        ));
    }
}
