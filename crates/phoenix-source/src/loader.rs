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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use phoenix_core::SpecHash;
use phoenix_core::spec::{GroupName, InstanceGroup, SpecError, parse_group};

use crate::revision::{DesiredGroup, Groups, Problem};

/// A blob id: git's object id, also used for folder files (computed the way git would).
pub type BlobId = git2::Oid;

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
}

type Parsed = Result<(Arc<InstanceGroup>, SpecHash), SpecError>;

#[derive(Debug, Clone)]
struct Entry {
    blob: BlobId,
    parsed: Parsed,
}

impl Entry {
    fn name(&self) -> Option<&GroupName> {
        self.parsed.as_ref().ok().map(|(group, _)| group.name())
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
    files: HashMap<String, Entry>,
    /// Paths claiming each name (valid files only).
    by_name: HashMap<GroupName, BTreeSet<String>>,
    /// Names claimed by more than one path.
    duplicates: BTreeSet<GroupName>,
    /// Paths whose parse failed.
    invalid: BTreeSet<String>,
    /// Paths changed since the last accepted tree, with the name each had then.
    pending: BTreeMap<String, Option<GroupName>>,
    accepted: Groups,
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
        self.files.keys().map(String::as_str)
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
            if let Some(old) = self.files.get(&change.path)
                && change.blob != Some(old.blob)
            {
                leaving.insert(old.blob, &old.parsed);
            }
        }
        // Phase 1, fallible: read and parse what changed.
        let mut reparsed = Vec::new();
        let mut staged: Vec<(String, Option<Entry>)> = Vec::with_capacity(changes.len());
        for change in changes {
            let Some(blob) = change.blob else {
                if self.files.contains_key(&change.path) {
                    staged.push((change.path, None));
                }
                continue;
            };
            if self.blob(&change.path) == Some(blob) {
                continue;
            }
            let parsed = match leaving.get(&blob) {
                Some(parsed) => (*parsed).clone(),
                None => {
                    let bytes = read(&change.path, blob)?;
                    reparsed.push(change.path.clone());
                    parse_bytes(&bytes)
                }
            };
            staged.push((change.path, Some(Entry { blob, parsed })));
        }
        // Phase 2, infallible: apply.
        for (path, entry) in staged {
            self.remove(&path);
            if let Some(entry) = entry {
                self.insert(path, entry);
            }
        }
        reparsed.sort();
        Ok(reparsed)
    }

    fn remove(&mut self, path: &str) {
        let Some(old) = self.files.remove(path) else {
            return;
        };
        self.pending
            .entry(path.to_string())
            .or_insert_with(|| old.name().cloned());
        match old.name() {
            Some(name) => {
                if let Some(paths) = self.by_name.get_mut(name) {
                    paths.remove(path);
                    match paths.len() {
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

    fn insert(&mut self, path: String, entry: Entry) {
        self.pending.entry(path.clone()).or_insert(None);
        match entry.name() {
            Some(name) => {
                let paths = self.by_name.entry(name.clone()).or_default();
                paths.insert(path.clone());
                if paths.len() > 1 {
                    self.duplicates.insert(name.clone());
                }
            }
            None => {
                self.invalid.insert(path.clone());
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
            for (path, old_name) in &pending {
                if let Some(name) = old_name
                    && groups.get(name).is_some_and(|g| &g.path == path)
                {
                    groups.remove(name);
                }
            }
            for path in pending.keys() {
                if let Some(Entry {
                    parsed: Ok((group, hash)),
                    ..
                }) = self.files.get(path)
                {
                    groups.insert(
                        group.name().clone(),
                        Arc::new(DesiredGroup {
                            path: path.clone(),
                            hash: *hash,
                            group: Arc::clone(group),
                        }),
                    );
                }
            }
        }
        Verdict::Accept(Arc::clone(&self.accepted))
    }

    fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for path in &self.invalid {
            if let Some(Entry {
                parsed: Err(err), ..
            }) = self.files.get(path)
            {
                problems.push(Problem {
                    path: Some(path.clone()),
                    line: err.line,
                    column: err.column,
                    message: err.message.clone(),
                });
            }
        }
        for name in &self.duplicates {
            let paths: Vec<&str> = self
                .by_name
                .get(name)
                .map(|paths| paths.iter().map(String::as_str).collect())
                .unwrap_or_default();
            if let Some((first, rest)) = paths.split_first() {
                for path in rest {
                    problems.push(Problem {
                        path: Some((*path).to_string()),
                        line: None,
                        column: None,
                        message: format!(
                            "metadata.name: group `{name}` is already defined in `{first}`"
                        ),
                    });
                }
            }
        }
        problems
    }
}

fn parse_bytes(bytes: &[u8]) -> Parsed {
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
    parse_group(text).map(|parsed| (parsed.group, parsed.hash))
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
            .map(|(path, blob)| Change {
                path: (*path).to_string(),
                blob: *blob,
            })
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
            .map(|(name, g)| (name.to_string(), g.path.clone()))
            .collect()
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
            let (_, hash) = parse_bytes(spec("a", "ami-2").as_bytes()).expect("valid");
            hash
        });
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
                Change {
                    path: "a.yaml".into(),
                    blob: None,
                },
                Change {
                    path: "b.yaml".into(),
                    blob: Some(b),
                },
            ],
            |_, _| Err("disk on fire"),
        );
        assert_eq!(result, Err("disk on fire"));
        assert_eq!(loader.blob("a.yaml"), Some(a));
        assert_eq!(loader.blob("b.yaml"), None);
    }

    #[test]
    fn oversized_and_non_utf8_files_are_invalid() {
        assert!(parse_bytes(&[0xff, 0xfe]).is_err_and(|e| e.message.contains("UTF-8")));
        let big = vec![b'#'; MAX_FILE_BYTES + 1];
        assert!(parse_bytes(&big).is_err_and(|e| e.message.contains("limited")));
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
