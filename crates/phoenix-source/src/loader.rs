//! Incremental loading shared by both sources: path -> (blob id, parse result), updated
//! from a list of changed paths, and the atomic accept/reject decision.
//!
//! A source hands [`Loader::update`] the paths whose blob changed (from a tree diff or a
//! folder scan) and a way to read a blob. Only those blobs are read and parsed; a file
//! that was renamed without a content change reuses its earlier parse. The update is
//! all-or-nothing: blobs are read and parsed first, and the index changes only once every
//! read succeeded, so an IO error leaves the loader as it was.
//!
//! [`Loader::evaluate`] then accepts the whole tree or rejects it. Invalid files and
//! duplicate names are tracked incrementally, and the accepted group map is derived from
//! the previous one plus the paths changed since, so a one-file commit costs work
//! proportional to the change (plus one shallow copy of the group map), not to the tree.
//!
//! Memory: a repository can hold 100,000 files, so the index stores each path once, as
//! an `Arc<str>` shared by every map that names it and by the accepted [`DesiredGroup`];
//! a valid file's entry *is* its `Arc<DesiredGroup>`, which the accepted map shares; and
//! the paths claiming a name are a single path, not a set, unless the name is duplicated.
//! Specs repeat one another's strings (provider, instance type, subnets, security
//! groups, label and tag keys, often image and user data): the loader parses through a
//! [`Interner`] it keeps, so each distinct string is held once across all specs.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use phoenix_core::spec::{GroupName, SpecError, parse_group_shared};
use phoenix_core::text::Interner;

use crate::revision::{DesiredGroup, Groups, Problem};

/// A blob id: git's object id, also used for folder files (computed the way git would).
/// A newtype, so that no git2 type is part of this crate's public API.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId(git2::Oid);

/// Bytes that are not a 20-byte object id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an object id is 20 bytes, got {0}")]
pub struct InvalidBlobId(pub usize);

impl BlobId {
    /// The id with these 20 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, InvalidBlobId> {
        git2::Oid::from_bytes(bytes)
            .map(BlobId)
            .map_err(|_| InvalidBlobId(bytes.len()))
    }

    /// The id's 20 bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    pub(crate) fn from_oid(oid: git2::Oid) -> Self {
        BlobId(oid)
    }

    pub(crate) fn oid(self) -> git2::Oid {
        self.0
    }
}

impl std::fmt::Display for BlobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Debug for BlobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlobId({})", self.0)
    }
}

/// Files larger than this are rejected without parsing.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// Whether a path names a desired-state file: `*.yaml` or `*.yml`, with no path
/// component starting with `.`.
pub fn is_spec_file(path: &str) -> bool {
    (path.ends_with(".yaml") || path.ends_with(".yml"))
        && !path.split('/').any(|part| part.starts_with('.'))
}

/// One path whose blob changed: `Some(blob)` for added or modified, `None` for deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Repository-relative path with `/`.
    pub path: String,
    /// The new blob, or `None` when the file is gone.
    pub blob: Option<BlobId>,
    /// Why the source refuses this path without reading it (a link leaving the folder,
    /// a link loop, a file over the size limit, a name that is not UTF-8): the path is
    /// then invalid with this message and its content is never read.
    pub refused: Option<String>,
}

impl Change {
    /// A path added or modified (`Some`) or deleted (`None`), to be read and parsed.
    pub fn new(path: String, blob: Option<BlobId>) -> Change {
        Change {
            path,
            blob,
            refused: None,
        }
    }
}

/// A file name as text: UTF-8 names unchanged, and in any other each byte that is not
/// part of valid UTF-8 written as `\xNN`. The flag says whether escaping was needed.
pub fn escape_file_name(bytes: &[u8]) -> (String, bool) {
    if let Ok(name) = std::str::from_utf8(bytes) {
        return (name.to_string(), false);
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    (out, true)
}

/// The refusal of a path whose name is not UTF-8.
pub fn non_utf8_name() -> String {
    "file name is not valid UTF-8 (shown with its bytes escaped); rename the file".to_string()
}

/// The blob id standing for a refused path's content (a hash of the refusal), so the
/// revision id changes when the reason does.
pub fn refused_blob(reason: &str) -> BlobId {
    git2::Oid::hash_object(git2::ObjectType::Blob, reason.as_bytes())
        .map(BlobId::from_oid)
        .expect("hashing bytes in memory cannot fail")
}

/// A repository-relative path, stored once and shared.
type Path = Arc<str>;

/// What a file's blob parsed to.
#[derive(Debug, Clone)]
enum Parsed {
    /// The group as it would be accepted, path included (shared with the accepted map).
    Valid(Arc<DesiredGroup>),
    /// Why the file is refused (boxed: rare, and larger than the valid case).
    Invalid(Box<SpecError>),
}

impl Parsed {
    /// The same parse for a file at `path` (a rename reuses the parse of the old path).
    fn at(&self, path: &Path) -> Parsed {
        match self {
            Parsed::Valid(group) => Parsed::Valid(Arc::new(DesiredGroup {
                path: Arc::clone(path),
                hash: group.hash,
                group: Arc::clone(&group.group),
            })),
            Parsed::Invalid(err) => Parsed::Invalid(err.clone()),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    blob: BlobId,
    parsed: Parsed,
}

impl Entry {
    fn valid(&self) -> Option<&Arc<DesiredGroup>> {
        match &self.parsed {
            Parsed::Valid(group) => Some(group),
            Parsed::Invalid(_) => None,
        }
    }
}

/// The paths of the valid files claiming one group name. One path is the rule, so it
/// is held without a collection; only a duplicated name allocates a (sorted) list.
#[derive(Debug)]
enum Claims {
    One(Path),
    /// Sorted, distinct, at least two.
    Many(Vec<Path>),
}

impl Claims {
    /// Add `path`; returns how many paths claim the name now.
    fn add(&mut self, path: Path) -> usize {
        match self {
            Claims::One(only) if *only == path => 1,
            Claims::One(only) => {
                let mut paths = vec![Arc::clone(only), path];
                paths.sort();
                *self = Claims::Many(paths);
                2
            }
            Claims::Many(paths) => {
                if let Err(at) = paths.binary_search(&path) {
                    paths.insert(at, path);
                }
                paths.len()
            }
        }
    }

    /// Remove `path`; returns how many paths claim the name now.
    fn remove(&mut self, path: &str) -> usize {
        match self {
            Claims::One(only) => usize::from(&**only != path),
            Claims::Many(paths) => {
                if let Ok(at) = paths.binary_search_by(|p| (**p).cmp(path)) {
                    paths.remove(at);
                }
                if let [only] = paths.as_slice() {
                    *self = Claims::One(Arc::clone(only));
                    1
                } else {
                    paths.len()
                }
            }
        }
    }

    /// The claiming paths, sorted.
    fn paths(&self) -> &[Path] {
        match self {
            Claims::One(only) => std::slice::from_ref(only),
            Claims::Many(paths) => paths,
        }
    }
}

/// The outcome of [`Loader::evaluate`].
#[derive(Debug)]
pub enum Verdict {
    /// Every file is valid and names are unique: these are the groups.
    Accept(Groups),
    /// The tree is refused for these reasons (never empty).
    Reject(Vec<Problem>),
}

/// The incremental index of one source.
#[derive(Debug, Default)]
pub struct Loader {
    files: HashMap<Path, Entry>,
    /// Paths claiming each name (valid files only).
    by_name: HashMap<GroupName, Claims>,
    /// Names claimed by more than one path.
    duplicates: BTreeSet<GroupName>,
    /// Paths whose parse failed.
    invalid: BTreeSet<Path>,
    /// Paths changed since the last accepted tree, with the group each had then.
    pending: HashMap<Path, Option<Arc<DesiredGroup>>>,
    accepted: Groups,
    /// The strings of every parsed spec, shared between specs.
    strings: Interner,
    /// How many strings were left after the last purge of those no spec holds.
    strings_after_purge: usize,
}

impl Loader {
    /// An empty index: nothing seen, nothing accepted.
    pub fn new() -> Self {
        Self::default()
    }

    /// The blob a path has in the current tree.
    pub fn blob(&self, path: &str) -> Option<BlobId> {
        self.files.get(path).map(|entry| entry.blob)
    }

    /// Every path in the current tree (unordered).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(|path| &**path)
    }

    /// How many files the current tree holds.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether the current tree holds no files.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Apply changed paths. `read` returns a blob's bytes; it is called only for blobs
    /// that must be parsed. Returns the parsed paths, sorted. On error nothing changed.
    pub fn update<E>(
        &mut self,
        changes: Vec<Change>,
        mut read: impl FnMut(&str, BlobId) -> Result<Vec<u8>, E>,
    ) -> Result<Vec<String>, E> {
        // Parses of files going away, by blob, so a rename does not parse again.
        let mut leaving: HashMap<BlobId, &Parsed> = HashMap::new();
        for change in &changes {
            if let Some(old) = self.files.get(change.path.as_str())
                && change.blob != Some(old.blob)
            {
                leaving.insert(old.blob, &old.parsed);
            }
        }
        // Phase 1, fallible: read and parse what changed.
        let mut reparsed = Vec::new();
        let mut staged: Vec<(Path, Option<Entry>)> = Vec::with_capacity(changes.len());
        for change in changes {
            // A path already in the index keeps its one allocation.
            let path = match self.files.get_key_value(change.path.as_str()) {
                Some((known, _)) => Arc::clone(known),
                None => Path::from(change.path),
            };
            let Some(blob) = change.blob else {
                if self.files.contains_key(&path) {
                    staged.push((path, None));
                }
                continue;
            };
            if self.blob(&path) == Some(blob) {
                continue;
            }
            let parsed = match (change.refused, leaving.get(&blob)) {
                (Some(reason), _) => Parsed::Invalid(Box::new(SpecError {
                    line: None,
                    column: None,
                    message: reason,
                })),
                (None, Some(parsed)) => parsed.at(&path),
                (None, None) => {
                    let bytes = read(&path, blob)?;
                    reparsed.push(path.to_string());
                    parse_bytes(&bytes, &path, &mut self.strings)
                }
            };
            staged.push((path, Some(Entry { blob, parsed })));
        }
        // Phase 2, infallible: apply.
        for (path, entry) in staged {
            self.remove(&path);
            if let Some(entry) = entry {
                self.insert(path, entry);
            }
        }
        // A purge scans every string, so it waits until the interner has grown by an
        // eighth: a one-file commit stays proportional to the change, and what replaced
        // specs leave behind stays under an eighth of what is held.
        if self.strings.len() > self.strings_after_purge + self.strings_after_purge / 8 {
            self.strings.purge();
            self.strings_after_purge = self.strings.len();
        }
        reparsed.sort();
        Ok(reparsed)
    }

    fn remove(&mut self, path: &Path) {
        let Some(old) = self.files.remove(path) else {
            return;
        };
        self.pending
            .entry(Arc::clone(path))
            .or_insert_with(|| old.valid().cloned());
        match old.valid() {
            Some(group) => {
                let name = group.name();
                if let Some(claims) = self.by_name.get_mut(name) {
                    match claims.remove(path) {
                        0 => {
                            self.by_name.remove(name);
                        }
                        1 => {
                            self.duplicates.remove(name);
                        }
                        _ => {}
                    }
                }
            }
            None => {
                self.invalid.remove(path);
            }
        }
    }

    fn insert(&mut self, path: Path, entry: Entry) {
        self.pending.entry(Arc::clone(&path)).or_insert(None);
        match entry.valid() {
            Some(group) => {
                let name = group.name();
                let claimed = match self.by_name.get_mut(name) {
                    Some(claims) => claims.add(Arc::clone(&path)),
                    None => {
                        self.by_name
                            .insert(name.clone(), Claims::One(Arc::clone(&path)));
                        1
                    }
                };
                if claimed > 1 {
                    self.duplicates.insert(name.clone());
                }
            }
            None => {
                self.invalid.insert(Arc::clone(&path));
            }
        }
        self.files.insert(path, entry);
    }

    /// Accept the current tree, or say why not. Accepting makes it the new base for the
    /// next accepted group map.
    pub fn evaluate(&mut self) -> Verdict {
        if !self.invalid.is_empty() || !self.duplicates.is_empty() {
            return Verdict::Reject(self.problems());
        }
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            let groups = Arc::make_mut(&mut self.accepted);
            for (path, old) in &pending {
                if let Some(old) = old
                    && groups.get(old.name()).is_some_and(|g| g.path == *path)
                {
                    groups.remove(old.name());
                }
            }
            for path in pending.keys() {
                if let Some(group) = self.files.get(path).and_then(Entry::valid) {
                    groups.insert(group.name().clone(), Arc::clone(group));
                }
            }
        }
        Verdict::Accept(Arc::clone(&self.accepted))
    }

    fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for path in &self.invalid {
            if let Some(Entry {
                parsed: Parsed::Invalid(err),
                ..
            }) = self.files.get(path)
            {
                problems.push(Problem {
                    path: Some(path.to_string()),
                    line: err.line,
                    column: err.column,
                    message: err.message.clone(),
                    commit: None,
                });
            }
        }
        for name in &self.duplicates {
            let paths = self
                .by_name
                .get(name)
                .map(Claims::paths)
                .unwrap_or_default();
            if let Some((first, rest)) = paths.split_first() {
                for path in rest {
                    problems.push(Problem {
                        path: Some(path.to_string()),
                        line: None,
                        column: None,
                        message: format!(
                            "metadata.name: group `{name}` is already defined in `{first}`"
                        ),
                        commit: None,
                    });
                }
            }
        }
        problems
    }
}

/// Parse a file's bytes into what the index keeps for it at `path`.
fn parse_bytes(bytes: &[u8], path: &Path, strings: &mut Interner) -> Parsed {
    match parse_text(bytes, strings) {
        Ok(parsed) => Parsed::Valid(Arc::new(DesiredGroup {
            path: Arc::clone(path),
            hash: parsed.hash,
            group: parsed.group,
        })),
        // Only a short, escaped excerpt of the file's own text may leave the daemon.
        Err(err) => Parsed::Invalid(Box::new(SpecError {
            message: phoenix_core::redact::excerpt(&err.message),
            ..err
        })),
    }
}

fn parse_text(
    bytes: &[u8],
    strings: &mut Interner,
) -> Result<phoenix_core::spec::ParsedGroup, SpecError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(SpecError {
            line: None,
            column: None,
            message: format!(
                "file is {} bytes; desired-state files are limited to {MAX_FILE_BYTES} bytes",
                bytes.len()
            ),
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|err| SpecError {
        line: None,
        column: None,
        message: format!("file is not valid UTF-8 ({err})"),
    })?;
    parse_group_shared(text, strings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn spec(name: &str, image: &str) -> String {
        format!(
            "apiVersion: phoenix/v1\nkind: InstanceGroup\nmetadata:\n  name: {name}\nspec:\n  provider: local\n  replicas: 1\n  template:\n    image: {image}\n    instanceType: t3.micro\n    subnetIds: [subnet-a]\n    securityGroupIds: [sg-a]\n"
        )
    }

    /// A fake object store: blob id = git's hash of the content.
    #[derive(Default)]
    struct Store(HashMap<BlobId, Vec<u8>>);

    impl Store {
        fn put(&mut self, text: &str) -> BlobId {
            let id = git2::Oid::hash_object(git2::ObjectType::Blob, text.as_bytes())
                .map(BlobId::from_oid)
                .expect("hashing a blob in memory");
            self.0.insert(id, text.as_bytes().to_vec());
            id
        }
    }

    fn apply(
        loader: &mut Loader,
        store: &Store,
        changes: &[(&str, Option<BlobId>)],
    ) -> Vec<String> {
        let changes = changes
            .iter()
            .map(|(path, blob)| Change::new((*path).to_string(), *blob))
            .collect();
        loader
            .update(changes, |_, blob| {
                Ok::<_, Infallible>(store.0[&blob].clone())
            })
            .expect("the fake store never fails")
    }

    fn accepted(loader: &mut Loader) -> Groups {
        match loader.evaluate() {
            Verdict::Accept(groups) => groups,
            Verdict::Reject(problems) => panic!("expected accept, got {problems:?}"),
        }
    }

    fn names(groups: &Groups) -> Vec<(String, String)> {
        groups
            .iter()
            .map(|(name, g)| (name.to_string(), g.path.to_string()))
            .collect()
    }

    #[test]
    fn specs_share_equal_strings_and_forget_them_when_gone() {
        let mut store = Store::default();
        let mut loader = Loader::new();
        let a = store.put(&spec("a", "ami-1"));
        let b = store.put(&spec("b", "ami-2"));
        apply(
            &mut loader,
            &store,
            &[("a.yaml", Some(a)), ("b.yaml", Some(b))],
        );
        let groups = accepted(&mut loader);
        let template = |name: &str| {
            let name = GroupName::new(name).expect("a valid name");
            groups[&name].group.spec.template.clone()
        };
        let (ta, tb) = (template("a"), template("b"));
        // One allocation for what both say, one each for what differs.
        assert_eq!(ta.instance_type.as_ptr(), tb.instance_type.as_ptr());
        assert_eq!(ta.subnet_ids[0].as_ptr(), tb.subnet_ids[0].as_ptr());
        assert_ne!(ta.image.as_ptr(), tb.image.as_ptr());
        drop((groups, ta, tb));

        apply(&mut loader, &store, &[("a.yaml", None), ("b.yaml", None)]);
        accepted(&mut loader);
        let c = store.put(&spec("c", "ami-3"));
        apply(&mut loader, &store, &[("c.yaml", Some(c))]);
        // c, local, ami-3, t3.micro, subnet-a, sg-a: nothing of a's or b's alone.
        assert_eq!(loader.strings.len(), 6);
    }

    #[test]
    fn parses_only_changed_blobs_and_reuses_renames() {
        let mut store = Store::default();
        let mut loader = Loader::new();
        let a = store.put(&spec("a", "ami-1"));
        let b = store.put(&spec("b", "ami-1"));
        assert_eq!(
            apply(
                &mut loader,
                &store,
                &[("a.yaml", Some(a)), ("b.yaml", Some(b))]
            ),
            ["a.yaml", "b.yaml"]
        );
        accepted(&mut loader);

        // Same blob again: nothing parsed.
        assert!(apply(&mut loader, &store, &[("a.yaml", Some(a))]).is_empty());
        // Rename: the parse is reused.
        assert!(
            apply(
                &mut loader,
                &store,
                &[("a.yaml", None), ("x/a.yaml", Some(a))]
            )
            .is_empty()
        );
        let groups = accepted(&mut loader);
        assert_eq!(
            names(&groups),
            [
                ("a".into(), "x/a.yaml".into()),
                ("b".into(), "b.yaml".into())
            ]
        );
    }

    #[test]
    fn invalid_file_rejects_and_keeps_the_accepted_map() {
        let mut store = Store::default();
        let mut loader = Loader::new();
        let a = store.put(&spec("a", "ami-1"));
        apply(&mut loader, &store, &[("a.yaml", Some(a))]);
        let before = accepted(&mut loader);
        let bad = store.put("apiVersion: phoenix/v1\nkind: InstanceGroup\nbogus: 1\n");
        apply(&mut loader, &store, &[("bad.yaml", Some(bad))]);
        let Verdict::Reject(problems) = loader.evaluate() else {
            panic!("an invalid file must reject the tree");
        };
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path.as_deref(), Some("bad.yaml"));
        assert!(problems[0].line.is_some(), "{problems:?}");
        // Fixing it accepts, and the map is the old one plus the fixed file.
        let fixed = store.put(&spec("c", "ami-1"));
        assert_eq!(
            apply(&mut loader, &store, &[("bad.yaml", Some(fixed))]),
            ["bad.yaml"]
        );
        let after = accepted(&mut loader);
        assert_eq!(before.len(), 1);
        assert_eq!(
            names(&after),
            [
                ("a".into(), "a.yaml".into()),
                ("c".into(), "bad.yaml".into())
            ]
        );
    }

    #[test]
    fn duplicate_names_reject_until_resolved() {
        let mut store = Store::default();
        let mut loader = Loader::new();
        let a1 = store.put(&spec("a", "ami-1"));
        let a2 = store.put(&spec("a", "ami-2"));
        apply(
            &mut loader,
            &store,
            &[("one.yaml", Some(a1)), ("two.yaml", Some(a2))],
        );
        let Verdict::Reject(problems) = loader.evaluate() else {
            panic!("duplicate names must reject the tree");
        };
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path.as_deref(), Some("two.yaml"));
        assert!(
            problems[0].message.contains("one.yaml"),
            "{}",
            problems[0].message
        );
        apply(&mut loader, &store, &[("one.yaml", None)]);
        let groups = accepted(&mut loader);
        assert_eq!(names(&groups), [("a".into(), "two.yaml".into())]);
        assert_eq!(groups[&GroupName::new("a").expect("valid")].hash, {
            parse_text(spec("a", "ami-2").as_bytes(), &mut Interner::new())
                .expect("valid")
                .hash
        });
    }

    #[test]
    fn a_name_in_three_files_is_reported_against_the_first_path() {
        let mut store = Store::default();
        let mut loader = Loader::new();
        let x1 = store.put(&spec("x", "ami-1"));
        let x2 = store.put(&spec("x", "ami-2"));
        let x3 = store.put(&spec("x", "ami-3"));
        apply(
            &mut loader,
            &store,
            &[
                ("c.yaml", Some(x1)),
                ("a.yaml", Some(x2)),
                ("b.yaml", Some(x3)),
            ],
        );
        let rejected = |loader: &mut Loader| match loader.evaluate() {
            Verdict::Reject(problems) => problems
                .into_iter()
                .map(|p| (p.path.unwrap_or_default(), p.message))
                .collect::<Vec<_>>(),
            Verdict::Accept(_) => panic!("duplicate names must reject the tree"),
        };
        let message =
            |first: &str| format!("metadata.name: group `x` is already defined in `{first}`");
        assert_eq!(
            rejected(&mut loader),
            [
                ("b.yaml".to_string(), message("a.yaml")),
                ("c.yaml".to_string(), message("a.yaml"))
            ]
        );
        apply(&mut loader, &store, &[("a.yaml", None)]);
        assert_eq!(
            rejected(&mut loader),
            [("c.yaml".to_string(), message("b.yaml"))]
        );
        apply(&mut loader, &store, &[("b.yaml", None)]);
        let groups = accepted(&mut loader);
        assert_eq!(names(&groups), [("x".into(), "c.yaml".into())]);
        // Back to one claim: no list is kept for it.
        let name = GroupName::new("x").expect("valid");
        assert!(matches!(loader.by_name.get(&name), Some(Claims::One(_))));
    }

    #[test]
    fn renaming_an_invalid_file_reuses_its_parse() {
        let mut store = Store::default();
        let mut loader = Loader::new();
        let bad = store.put("apiVersion: phoenix/v1\nkind: InstanceGroup\nbogus: 1\n");
        assert_eq!(
            apply(&mut loader, &store, &[("bad.yaml", Some(bad))]),
            ["bad.yaml"]
        );
        assert!(
            apply(
                &mut loader,
                &store,
                &[("bad.yaml", None), ("moved.yaml", Some(bad))]
            )
            .is_empty()
        );
        let Verdict::Reject(problems) = loader.evaluate() else {
            panic!("an invalid file must reject the tree");
        };
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path.as_deref(), Some("moved.yaml"));
        assert!(problems[0].line.is_some(), "{problems:?}");
    }

    #[test]
    fn each_path_is_stored_once() {
        let mut store = Store::default();
        let mut loader = Loader::new();
        let a = store.put(&spec("a", "ami-1"));
        apply(&mut loader, &store, &[("a.yaml", Some(a))]);
        let groups = accepted(&mut loader);
        let desired = &groups[&GroupName::new("a").expect("valid")];
        let (key, entry) = loader.files.get_key_value("a.yaml").expect("indexed");
        assert!(Arc::ptr_eq(key, &desired.path));
        assert!(Arc::ptr_eq(entry.valid().expect("valid"), desired));
        let claims = loader.by_name.get(desired.name()).expect("claimed");
        assert!(Arc::ptr_eq(&claims.paths()[0], key));
        let first = Arc::clone(key);
        // A new blob at the same path keeps the path's allocation.
        let a2 = store.put(&spec("a", "ami-2"));
        apply(&mut loader, &store, &[("a.yaml", Some(a2))]);
        let groups = accepted(&mut loader);
        let desired = &groups[&GroupName::new("a").expect("valid")];
        let (key, _) = loader.files.get_key_value("a.yaml").expect("indexed");
        assert!(Arc::ptr_eq(key, &first));
        assert!(Arc::ptr_eq(key, &desired.path));
        assert!(loader.pending.is_empty());
    }

    #[test]
    fn moving_a_name_between_files_keeps_it() {
        let mut store = Store::default();
        let mut loader = Loader::new();
        let a = store.put(&spec("a", "ami-1"));
        let other = store.put(&spec("b", "ami-1"));
        apply(&mut loader, &store, &[("one.yaml", Some(a))]);
        accepted(&mut loader);
        // one.yaml becomes group b, two.yaml takes over group a.
        let a2 = store.put(&spec("a", "ami-2"));
        apply(
            &mut loader,
            &store,
            &[("one.yaml", Some(other)), ("two.yaml", Some(a2))],
        );
        let groups = accepted(&mut loader);
        assert_eq!(
            names(&groups),
            [
                ("a".into(), "two.yaml".into()),
                ("b".into(), "one.yaml".into())
            ]
        );
    }

    #[test]
    fn failed_read_changes_nothing() {
        let mut store = Store::default();
        let mut loader = Loader::new();
        let a = store.put(&spec("a", "ami-1"));
        apply(&mut loader, &store, &[("a.yaml", Some(a))]);
        let b = store.put(&spec("b", "ami-1"));
        let result = loader.update(
            vec![
                Change::new("a.yaml".into(), None),
                Change::new("b.yaml".into(), Some(b)),
            ],
            |_, _| Err("disk on fire"),
        );
        assert_eq!(result, Err("disk on fire"));
        assert_eq!(loader.blob("a.yaml"), Some(a));
        assert_eq!(loader.blob("b.yaml"), None);
    }

    #[test]
    fn oversized_and_non_utf8_files_are_invalid() {
        assert!(
            parse_text(&[0xff, 0xfe], &mut Interner::new())
                .is_err_and(|e| e.message.contains("UTF-8"))
        );
        let big = vec![b'#'; MAX_FILE_BYTES + 1];
        assert!(
            parse_text(&big, &mut Interner::new()).is_err_and(|e| e.message.contains("limited"))
        );
    }

    #[test]
    fn spec_file_filter() {
        assert!(is_spec_file("groups/web.yaml"));
        assert!(is_spec_file("web.yml"));
        assert!(!is_spec_file("README.md"));
        assert!(!is_spec_file(".github/workflow.yaml"));
        assert!(!is_spec_file("groups/.hidden.yaml"));
    }
}
