//! Integration tests for issue 3 against real repositories: a bare repository served by
//! `git daemon` on a loopback port (git://) or read directly (file://), commits made with
//! the `git` CLI, and a real folder for `DirSource`. Every scenario asserts the revision
//! and exactly which files were parsed again.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use phoenix_core::config::{DirSourceConfig, GitAuthConfig, GitSourceConfig};
use phoenix_core::parse_group;
use phoenix_source::{
    DirSource, GitSource, PollOutcome, Rejection, Revision, RevisionId, SourceError,
    SourceErrorKind,
};
use phoenix_testkit::git::{GitDaemon, RepoHost, WorkRepo};
use std::sync::Arc;

/// Each scenario runs on its own thread and fails if it takes longer than this, so a
/// hung network call fails the test instead of hanging it.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(120);

pub(crate) fn within(body: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        body();
        let _ = done.send(());
    });
    match finished.recv_timeout(SCENARIO_TIMEOUT) {
        Ok(()) => thread.join().expect("scenario thread finished"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // The body panicked: re-raise its panic here.
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("scenario did not finish within {SCENARIO_TIMEOUT:?}")
        }
    }
}

fn spec(name: &str, image: &str) -> String {
    format!(
        "apiVersion: phoenix/v1\nkind: InstanceGroup\nmetadata:\n  name: {name}\nspec:\n  provider: local\n  replicas: 2\n  template:\n    image: {image}\n    instanceType: t3.micro\n    subnetIds: [subnet-a]\n    securityGroupIds: [sg-a]\n"
    )
}

/// A file with an unknown key on line 5, column 3.
const INVALID: &str = "apiVersion: phoenix/v1\nkind: InstanceGroup\nmetadata:\n  name: broken\n  colour: red\nspec:\n  provider: local\n  replicas: 1\n  template: {image: ami-1, instanceType: t3.micro}\n";

fn git_config(url: String, path: &str) -> GitSourceConfig {
    GitSourceConfig {
        url,
        branch: None,
        reference: None,
        path: path.to_string(),
        interval: Duration::from_secs(30),
        auth: GitAuthConfig::default(),
        verify: None,
    }
}

fn accepted(outcome: Result<PollOutcome, SourceError>) -> (Arc<Revision>, Vec<String>) {
    match outcome {
        Ok(PollOutcome::Accepted { revision, reparsed }) => (revision, reparsed),
        other => panic!("expected an accepted revision, got {other:?}"),
    }
}

fn rejected(outcome: Result<PollOutcome, SourceError>) -> (Arc<Rejection>, Vec<String>) {
    match outcome {
        Ok(PollOutcome::Rejected {
            rejection,
            reparsed,
        }) => (rejection, reparsed),
        other => panic!("expected a rejected revision, got {other:?}"),
    }
}

fn assert_unchanged(outcome: Result<PollOutcome, SourceError>) {
    assert!(
        matches!(outcome, Ok(PollOutcome::Unchanged)),
        "expected unchanged, got {outcome:?}"
    );
}

/// The revision's groups as (name, path, hash) sorted by name.
fn groups(revision: &Revision) -> Vec<(String, String, String)> {
    revision
        .groups
        .values()
        .map(|g| (g.name().to_string(), g.path.to_string(), g.hash.to_string()))
        .collect()
}

fn hash_of(text: &str) -> String {
    parse_group(text)
        .expect("test spec is valid")
        .hash
        .to_string()
}

fn paths(list: &[&str]) -> Vec<String> {
    list.iter().map(|p| (*p).to_string()).collect()
}

/// A served repository: bare repo `infra.git` on a git daemon, and a work repo pushing to it.
struct Served {
    host: RepoHost,
    work: WorkRepo,
    daemon: GitDaemon,
    cache: tempfile::TempDir,
}

fn served() -> Served {
    let host = RepoHost::new();
    let bare = host.create("infra");
    let work = WorkRepo::new(&bare);
    let daemon = GitDaemon::start(host.path());
    Served {
        host,
        work,
        daemon,
        cache: tempfile::tempdir().expect("cache tempdir"),
    }
}

fn open(config: &GitSourceConfig, cache: &Path) -> GitSource {
    GitSource::open(config, cache).expect("valid source config")
}

#[test]
fn add_modify_delete_rename_parse_only_what_changed() {
    within(|| {
        let s = served();
        let mut source = open(&git_config(s.daemon.url("infra"), "groups"), s.cache.path());

        s.work
            .write("groups/web.yaml", &spec("web", "ami-1"))
            .write("groups/db.yaml", &spec("db", "ami-1"))
            .write("groups/notes.md", "not a spec")
            .write(
                "other/ignored.yaml",
                "outside the configured path: not parsed",
            );
        let c1 = s.work.commit("first groups");
        s.work.push();
        let (rev, reparsed) = accepted(source.poll());
        assert_eq!(rev.id, RevisionId::new(&c1));
        assert_eq!(reparsed, paths(&["groups/db.yaml", "groups/web.yaml"]));
        assert_eq!(
            groups(&rev),
            [
                (
                    "db".into(),
                    "groups/db.yaml".into(),
                    hash_of(&spec("db", "ami-1"))
                ),
                (
                    "web".into(),
                    "groups/web.yaml".into(),
                    hash_of(&spec("web", "ami-1"))
                ),
            ]
        );
        let commit = rev
            .commit
            .as_ref()
            .expect("git revisions carry commit info");
        assert_eq!(commit.message.trim(), "first groups");
        assert_eq!(commit.author, "Phoenix Test");
        assert_eq!(commit.email, "test@phoenix.invalid");
        assert!(rev.rejection.is_none());
        assert_unchanged(source.poll());

        // Add.
        s.work.write("groups/cache.yaml", &spec("cache", "ami-1"));
        let c2 = s.work.commit("add cache");
        s.work.push();
        let (rev, reparsed) = accepted(source.poll());
        assert_eq!(rev.id.as_str(), c2);
        assert_eq!(reparsed, paths(&["groups/cache.yaml"]));
        assert_eq!(rev.groups.len(), 3);

        // Modify.
        s.work.write("groups/web.yaml", &spec("web", "ami-2"));
        let c3 = s.work.commit("new web image");
        s.work.push();
        let (rev, reparsed) = accepted(source.poll());
        assert_eq!(rev.id.as_str(), c3);
        assert_eq!(reparsed, paths(&["groups/web.yaml"]));
        assert_eq!(
            groups(&rev)[2],
            (
                "web".into(),
                "groups/web.yaml".into(),
                hash_of(&spec("web", "ami-2"))
            )
        );

        // Delete.
        s.work.remove("groups/db.yaml");
        let c4 = s.work.commit("drop db");
        s.work.push();
        let (rev, reparsed) = accepted(source.poll());
        assert_eq!(rev.id.as_str(), c4);
        assert!(
            reparsed.is_empty(),
            "a deletion parses nothing: {reparsed:?}"
        );
        assert_eq!(
            rev.groups.keys().map(|n| n.as_str()).collect::<Vec<_>>(),
            ["cache", "web"]
        );

        // Rename into a subfolder: same blob, so no parse, but the path follows.
        s.work
            .rename("groups/cache.yaml", "groups/team-a/cache.yaml");
        let c5 = s.work.commit("move cache");
        s.work.push();
        let (rev, reparsed) = accepted(source.poll());
        assert_eq!(rev.id.as_str(), c5);
        assert!(
            reparsed.is_empty(),
            "a pure rename parses nothing: {reparsed:?}"
        );
        assert_eq!(
            groups(&rev)[0],
            (
                "cache".into(),
                "groups/team-a/cache.yaml".into(),
                hash_of(&spec("cache", "ami-1"))
            )
        );

        // A change outside the folder is a new revision with the same groups.
        s.work.write("other/ignored.yaml", "still not parsed");
        let c6 = s.work.commit("unrelated");
        s.work.push();
        let (rev6, reparsed) = accepted(source.poll());
        assert_eq!(rev6.id.as_str(), c6);
        assert!(reparsed.is_empty());
        assert_eq!(groups(&rev6), groups(&rev));
    });
}

/// The incremental tree diff (a merge over Git's sorted entries) must find exactly what a
/// fresh full load finds. Names are chosen around Git's tree order, where a folder sorts
/// as if its name ended in `/`: `a-b.yaml` < `a.yaml` < `a/` < `a0.yaml`.
#[test]
fn incremental_diff_matches_a_fresh_load_around_tree_order() {
    within(|| {
        let s = served();
        let config = git_config(s.daemon.url("infra"), "groups");
        let mut source = open(&config, s.cache.path());
        // (commit message, [(path, group name or file text; None deletes)])
        type Edits<'a> = Vec<(&'a str, Option<&'a str>)>;
        let steps: Vec<(&str, Edits<'_>)> = vec![
            (
                "start",
                vec![
                    ("groups/a-b.yaml", Some("ab")),
                    ("groups/a.yaml", Some("a")),
                    ("groups/a/x.yaml", Some("ax")),
                    ("groups/a0.yaml", Some("a0")),
                    ("groups/b/c/d.yaml", Some("bcd")),
                ],
            ),
            (
                "change around the folder",
                vec![
                    ("groups/a.yaml", Some("a-2")),
                    ("groups/a/x.yaml", Some("ax-2")),
                    ("groups/a0.yaml", None),
                    ("groups/a/y.yaml", Some("ay")),
                ],
            ),
            (
                "folder goes, file with its name comes",
                vec![
                    ("groups/a/x.yaml", None),
                    ("groups/a/y.yaml", None),
                    ("groups/a", Some("a-file-not-a-spec")),
                    ("groups/b/c/e.yaml", Some("bce")),
                ],
            ),
            (
                "file goes, folder with its name comes",
                vec![
                    ("groups/a", None),
                    ("groups/a/z.yaml", Some("az")),
                    ("groups/b/c/d.yaml", None),
                ],
            ),
        ];
        for (message, edits) in steps {
            for (path, name) in edits {
                match name {
                    Some(name) if path.ends_with(".yaml") => {
                        s.work.write(path, &spec(name, "ami-1"));
                    }
                    Some(text) => {
                        // The folder of the same name was emptied just before.
                        let _ = std::fs::remove_dir(s.work.path().join(path));
                        s.work.write(path, text);
                    }
                    None => {
                        s.work.remove(path);
                    }
                }
            }
            let commit = s.work.commit(message);
            s.work.push();
            let (incremental, _) = accepted(source.poll());
            assert_eq!(incremental.id.as_str(), commit);
            let fresh_cache = tempfile::tempdir().expect("cache tempdir");
            let (fresh, _) = accepted(open(&config, fresh_cache.path()).poll());
            assert_eq!(groups(&incremental), groups(&fresh), "after `{message}`");
        }
    });
}

#[test]
fn invalid_file_and_duplicate_name_keep_the_last_good_revision() {
    within(|| {
        let host = RepoHost::new();
        let bare = host.create("infra");
        let work = WorkRepo::new(&bare);
        let cache = tempfile::tempdir().expect("cache tempdir");
        // file:// this time.
        let mut source = open(&git_config(host.file_url("infra"), ""), cache.path());

        work.write("web.yaml", &spec("web", "ami-1"));
        let good = work.commit("good");
        work.push();
        let (rev, _) = accepted(source.poll());
        assert_eq!(rev.id.as_str(), good);

        // An invalid file rejects the whole revision, even though web.yaml changed too.
        work.write("web.yaml", &spec("web", "ami-2"))
            .write("broken.yaml", INVALID);
        let bad = work.commit("half valid");
        work.push();
        let (rejection, reparsed) = rejected(source.poll());
        assert_eq!(reparsed, paths(&["broken.yaml", "web.yaml"]));
        assert_eq!(rejection.revision.as_str(), bad);
        let problem = rejection.primary();
        assert_eq!(problem.path.as_deref(), Some("broken.yaml"));
        assert_eq!(
            (problem.line, problem.column),
            (Some(5), Some(3)),
            "{problem}"
        );
        assert!(problem.message.contains("colour"), "{problem}");
        let current = source.current().expect("the good revision stays in force");
        assert_eq!(current.id.as_str(), good);
        assert_eq!(groups(&current)[0].2, hash_of(&spec("web", "ami-1")));
        assert_eq!(current.rejection.as_deref(), Some(&*rejection));
        assert_unchanged(source.poll());

        // Fixing the file but claiming `web` twice is still rejected.
        work.write("broken.yaml", &spec("web", "ami-3"));
        let dup = work.commit("fix, but duplicate");
        work.push();
        let (rejection, reparsed) = rejected(source.poll());
        assert_eq!(reparsed, paths(&["broken.yaml"]));
        assert_eq!(rejection.revision.as_str(), dup);
        assert_eq!(rejection.problems.len(), 1);
        assert_eq!(rejection.primary().path.as_deref(), Some("web.yaml"));
        assert!(
            rejection.primary().message.contains("broken.yaml"),
            "{}",
            rejection.primary()
        );
        assert_eq!(source.current().expect("still in force").id.as_str(), good);

        // Resolving the duplicate accepts; web.yaml was parsed before and is not again.
        work.remove("broken.yaml");
        let fixed = work.commit("resolve duplicate");
        work.push();
        let (rev, reparsed) = accepted(source.poll());
        assert!(reparsed.is_empty(), "{reparsed:?}");
        assert_eq!(rev.id.as_str(), fixed);
        assert_eq!(
            groups(&rev),
            [(
                "web".into(),
                "web.yaml".into(),
                hash_of(&spec("web", "ami-2"))
            )]
        );
        assert!(source.rejection().is_none());
        assert!(rev.rejection.is_none());
    });
}

#[test]
fn first_revision_invalid_has_nothing_in_force_and_empty_revision_is_valid() {
    within(|| {
        let host = RepoHost::new();
        let bare = host.create("infra");
        let work = WorkRepo::new(&bare);
        let cache = tempfile::tempdir().expect("cache tempdir");
        let mut source = open(&git_config(host.file_url("infra"), "groups"), cache.path());

        work.write("groups/a.yaml", INVALID);
        work.commit("broken from the start");
        work.push();
        rejected(source.poll());
        assert!(source.current().is_none());
        assert!(source.rejection().is_some());

        // No YAML left, folder kept by a README: zero groups is a valid revision.
        work.remove("groups/a.yaml")
            .write("groups/README.md", "empty on purpose");
        work.commit("empty");
        work.push();
        let (rev, reparsed) = accepted(source.poll());
        assert!(rev.groups.is_empty());
        assert!(reparsed.is_empty());

        // A missing folder rejects (a typo, not an intent to delete everything).
        work.remove("groups/README.md")
            .write("elsewhere/a.yaml", &spec("a", "ami-1"));
        let gone = work.commit("folder gone");
        work.push();
        let (rejection, _) = rejected(source.poll());
        assert_eq!(rejection.revision.as_str(), gone);
        assert_eq!(rejection.primary().path.as_deref(), Some("groups"));
        assert!(rejection.primary().message.contains("does not exist"));
    });
}

#[test]
fn force_push_makes_the_new_commit_the_desired_state() {
    within(|| {
        let s = served();
        let mut source = open(&git_config(s.daemon.url("infra"), "groups"), s.cache.path());
        s.work
            .write("groups/web.yaml", &spec("web", "ami-1"))
            .write("groups/db.yaml", &spec("db", "ami-1"));
        let base = s.work.commit("base");
        s.work.push();
        accepted(source.poll());
        s.work.write("groups/web.yaml", &spec("web", "ami-2"));
        s.work.commit("web to ami-2");
        s.work.push();
        accepted(source.poll());

        // Rewrite history: drop the ami-2 commit, change db instead, force-push.
        s.work.reset_hard(&base);
        s.work.write("groups/db.yaml", &spec("db", "ami-9"));
        let rewritten = s.work.commit("db to ami-9 instead");
        s.work.push();
        let (rev, reparsed) = accepted(source.poll());
        assert_eq!(rev.id.as_str(), rewritten);
        // Compared with the previous tree both files differ; web's blob is back to a
        // content parsed earlier but no longer in the index, so it is parsed again.
        assert_eq!(reparsed, paths(&["groups/db.yaml", "groups/web.yaml"]));
        assert_eq!(
            groups(&rev),
            [
                (
                    "db".into(),
                    "groups/db.yaml".into(),
                    hash_of(&spec("db", "ami-9"))
                ),
                (
                    "web".into(),
                    "groups/web.yaml".into(),
                    hash_of(&spec("web", "ami-1"))
                ),
            ]
        );
    });
}

#[test]
fn unreachable_remote_keeps_the_revision_and_recovers() {
    within(|| {
        let s = served();
        let port = s.daemon.port();
        let mut source = open(&git_config(s.daemon.url("infra"), ""), s.cache.path());
        s.work.write("web.yaml", &spec("web", "ami-1"));
        let c1 = s.work.commit("one");
        s.work.push();
        accepted(source.poll());

        s.daemon.stop();
        s.work.write("web.yaml", &spec("web", "ami-2"));
        let c2 = s.work.commit("two");
        s.work.push(); // straight to the bare repository, not through the daemon
        let err = source.poll().expect_err("the daemon is down");
        assert_eq!(err.kind(), SourceErrorKind::Unreachable, "{err:?}");
        assert!(
            matches!(err, SourceError::Unreachable { ref url, .. } if url.contains(&port.to_string()))
        );
        assert_eq!(source.current().expect("still in force").id.as_str(), c1);
        assert!(source.rejection().is_none(), "an outage is not a rejection");

        let _daemon = GitDaemon::start_on(s.host.path(), port);
        let (rev, reparsed) = accepted(source.poll());
        assert_eq!(rev.id.as_str(), c2);
        assert_eq!(reparsed, paths(&["web.yaml"]));
    });
}

/// Zero every pack file of a clone: the objects are still listed but cannot be read.
fn zero_all_packs(clone: &Path) {
    let packs = clone.join("objects").join("pack");
    let mut zeroed = 0;
    for entry in std::fs::read_dir(&packs).expect("clone has a pack folder") {
        let path = entry.expect("readable entry").path();
        if path.extension().is_some_and(|ext| ext == "pack") {
            let len = std::fs::metadata(&path).expect("pack metadata").len();
            std::fs::write(&path, vec![0u8; usize::try_from(len).expect("small pack")])
                .expect("zero a pack");
            zeroed += 1;
        }
    }
    assert!(zeroed > 0, "the clone had no pack to damage");
}

#[test]
fn corrupt_clone_is_removed_and_cloned_again() {
    within(|| {
        let s = served();
        let config = git_config(s.daemon.url("infra"), "groups");
        let mut source = open(&config, s.cache.path());
        s.work
            .write("groups/web.yaml", &spec("web", "ami-1"))
            .write("groups/db.yaml", &spec("db", "ami-1"));
        s.work.commit("one");
        s.work.push();
        accepted(source.poll());

        s.work.write("groups/web.yaml", &spec("web", "ami-2"));
        s.work.commit("two");
        s.work.push();
        accepted(source.poll());

        // The clone's packs are damaged under a live source (a disk fault, a bad restore).
        zero_all_packs(source.clone_dir());
        s.work.write("groups/web.yaml", &spec("web", "ami-1"));
        let c2 = s.work.commit("three");
        s.work.push();
        let (rev, reparsed) = accepted(source.poll());
        assert_eq!(rev.id.as_str(), c2);
        assert_eq!(
            reparsed,
            paths(&["groups/web.yaml"]),
            "the index survives a re-clone"
        );
        assert_eq!(groups(&rev)[1].2, hash_of(&spec("web", "ami-1")));

        // A restart on a clone that cannot even be opened.
        let clone_dir = source.clone_dir().to_path_buf();
        drop(source);
        std::fs::write(clone_dir.join("HEAD"), "garbage").expect("damage HEAD");
        std::fs::remove_dir_all(clone_dir.join("refs")).expect("damage refs");
        let mut restarted = open(&config, s.cache.path());
        let (rev, reparsed) = accepted(restarted.poll());
        assert_eq!(rev.id.as_str(), c2);
        assert_eq!(reparsed, paths(&["groups/db.yaml", "groups/web.yaml"]));
    });
}

#[test]
fn tags_branches_and_pinned_commits() {
    within(|| {
        let s = served();
        s.work.write("web.yaml", &spec("web", "ami-1"));
        let c1 = s.work.commit("one");
        s.work.tag("v1", true).push();
        s.work.write("web.yaml", &spec("web", "ami-2"));
        let c2 = s.work.commit("two");
        s.work.push_branch("staging").push();

        // A full tag ref (annotated: peeled to its commit).
        let mut config = git_config(s.daemon.url("infra"), "");
        config.reference = Some("refs/tags/v1".into());
        let mut tagged = open(&config, s.cache.path());
        assert_eq!(accepted(tagged.poll()).0.id.as_str(), c1);
        assert_unchanged(tagged.poll());
        // Moving the tag is a new revision.
        git_in(
            s.work.path(),
            &["tag", "-f", "-a", "-m", "moved", "v1", &c2],
        );
        s.work.push();
        assert_eq!(accepted(tagged.poll()).0.id.as_str(), c2);

        // A short name resolves to the branch.
        let mut config = git_config(s.daemon.url("infra"), "");
        config.reference = Some("staging".into());
        let cache = tempfile::tempdir().expect("cache tempdir");
        assert_eq!(
            accepted(open(&config, cache.path()).poll()).0.id.as_str(),
            c2
        );

        // A branch that does not exist.
        let mut config = git_config(s.daemon.url("infra"), "");
        config.branch = Some("nope".into());
        let err = open(&config, cache.path())
            .poll()
            .expect_err("no such branch");
        assert!(
            matches!(err, SourceError::RefNotFound { ref reference, .. } if reference == "refs/heads/nope"),
            "{err:?}"
        );

        // A pinned commit needs no network once it is local.
        let mut config = git_config(s.daemon.url("infra"), "");
        config.reference = Some(c1.clone());
        let mut pinned = open(&config, cache.path());
        assert_eq!(accepted(pinned.poll()).0.id.as_str(), c1);
        let Served { daemon, .. } = s;
        daemon.stop();
        assert_unchanged(pinned.poll());
    });
}

fn git_in(dir: &Path, args: &[&str]) {
    phoenix_testkit::git::git(dir, args);
}

#[test]
fn webhook_poll_now_aims_at_the_pushed_commit() {
    within(|| {
        let Served {
            host,
            work,
            daemon,
            cache,
        } = served();
        let port = daemon.port();
        let mut source = open(&git_config(daemon.url("infra"), ""), cache.path());
        work.write("web.yaml", &spec("web", "ami-1"));
        let c1 = work.commit("one");
        work.push();
        accepted(source.poll());

        // The commit already evaluated is answered without network IO: the daemon is down.
        daemon.stop();
        assert_unchanged(source.poll_now(Some(&RevisionId::new(&c1))));

        // A pushed commit the remote advertises is fetched at once.
        let _daemon = GitDaemon::start_on(host.path(), port);
        work.write("web.yaml", &spec("web", "ami-2"));
        let c2 = work.commit("two");
        work.push();
        let (rev, reparsed) = accepted(source.poll_now(Some(&RevisionId::new(&c2))));
        assert_eq!(rev.id.as_str(), c2);
        assert_eq!(reparsed, paths(&["web.yaml"]));

        // A webhook running ahead of the remote (a lagging replica) is a typed, retryable error.
        let ahead = RevisionId::new("0123456789abcdef0123456789abcdef01234567");
        let err = source
            .poll_now(Some(&ahead))
            .expect_err("the remote does not advertise it");
        assert_eq!(err.kind(), SourceErrorKind::Lagging);
        assert!(
            matches!(err, SourceError::NotYetAdvertised { ref tip, .. } if tip.as_str() == c2),
            "{err:?}"
        );
        assert_eq!(source.current().expect("in force").id.as_str(), c2);
    });
}

fn dir_config(path: &Path, watch: bool) -> DirSourceConfig {
    DirSourceConfig {
        path: path.to_path_buf(),
        watch,
        interval: Duration::from_secs(30),
    }
}

#[test]
fn dir_source_has_the_same_atomic_incremental_semantics() {
    within(|| {
        let dir = tempfile::tempdir().expect("desired-state folder");
        let write = |rel: &str, text: &str| {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
            std::fs::write(path, text).expect("write spec");
        };
        write("web.yaml", &spec("web", "ami-1"));
        write("team/db.yml", &spec("db", "ami-1"));
        write(".hidden/x.yaml", INVALID);
        write("README.md", "ignored");
        let mut source = DirSource::open(&dir_config(dir.path(), false)).expect("open folder");
        let (r1, reparsed) = accepted(source.poll());
        assert_eq!(reparsed, paths(&["team/db.yml", "web.yaml"]));
        assert!(
            r1.id.as_str().starts_with("sha256:") && r1.id.as_str().len() == 71,
            "{}",
            r1.id
        );
        assert!(r1.commit.is_none());
        assert_eq!(
            groups(&r1),
            [
                (
                    "db".into(),
                    "team/db.yml".into(),
                    hash_of(&spec("db", "ami-1"))
                ),
                (
                    "web".into(),
                    "web.yaml".into(),
                    hash_of(&spec("web", "ami-1"))
                ),
            ]
        );
        assert_unchanged(source.poll());

        write("web.yaml", &spec("web", "ami-2"));
        let (r2, reparsed) = accepted(source.poll());
        assert_eq!(reparsed, paths(&["web.yaml"]));
        assert_ne!(r2.id, r1.id);

        write("bad.yaml", INVALID);
        let (rejection, reparsed) = rejected(source.poll());
        assert_eq!(reparsed, paths(&["bad.yaml"]));
        assert_eq!(rejection.primary().path.as_deref(), Some("bad.yaml"));
        assert_eq!(source.current().expect("in force").id, r2.id);

        std::fs::remove_file(dir.path().join("bad.yaml")).expect("remove bad file");
        std::fs::rename(
            dir.path().join("web.yaml"),
            dir.path().join("team/web.yaml"),
        )
        .expect("rename");
        let (r3, reparsed) = accepted(source.poll());
        assert!(reparsed.is_empty(), "{reparsed:?}");
        assert_eq!(groups(&r3)[1].1, "team/web.yaml");

        // Content, not time, identifies a folder revision: back to r2's content, r2's id.
        std::fs::rename(
            dir.path().join("team/web.yaml"),
            dir.path().join("web.yaml"),
        )
        .expect("rename back");
        let (r4, _) = accepted(source.poll());
        assert_eq!(r4.id, r2.id);
    });
}

#[tokio::test]
async fn dir_watcher_signals_changes() {
    let dir = tempfile::tempdir().expect("desired-state folder");
    std::fs::write(dir.path().join("web.yaml"), spec("web", "ami-1")).expect("write spec");
    let mut source = DirSource::open(&dir_config(dir.path(), true)).expect("open watched folder");
    let signal = source.watch_signal().expect("watching");
    accepted(source.poll());

    std::fs::write(dir.path().join("db.yaml"), spec("db", "ami-1")).expect("write spec");
    tokio::time::timeout(Duration::from_secs(10), signal.changed())
        .await
        .expect("the watcher signals within 10 s");
    let (rev, reparsed) = accepted(source.poll());
    assert_eq!(reparsed, paths(&["db.yaml"]));
    assert_eq!(rev.groups.len(), 2);
}
