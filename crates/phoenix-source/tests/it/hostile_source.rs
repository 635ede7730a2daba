//! Issue 17 (defects 2, 3 and 9): hostile desired-state folders and repositories.
//! Links that leave the folder, link loops, huge files, links to `/proc`, non-UTF-8 file
//! names and files whose text must not be echoed all reject the revision, naming the
//! path, and keep the last good revision in force.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use phoenix_core::config::{DirSourceConfig, GitAuthConfig, GitSourceConfig};
use phoenix_source::{DirSource, GitSource, PollOutcome, Rejection, SourceError};
use phoenix_testkit::git::{RepoHost, WorkRepo};

const TIMEOUT: Duration = Duration::from_secs(120);

/// Run `body` on its own thread and fail if it does not finish in time (a link loop or
/// a blocking read must fail the test, not hang it).
fn within(body: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        body();
        let _ = done.send(());
    });
    match finished.recv_timeout(TIMEOUT) {
        Ok(()) => thread.join().expect("scenario thread finished"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("scenario did not finish within {TIMEOUT:?}")
        }
    }
}

fn spec(name: &str) -> String {
    format!(
        "apiVersion: phoenix/v1\nkind: InstanceGroup\nmetadata:\n  name: {name}\nspec:\n  provider: local\n  replicas: 2\n  template:\n    image: ami-1\n    instanceType: t3.micro\n    subnetIds: [subnet-a]\n    securityGroupIds: [sg-a]\n"
    )
}

fn folder(path: &Path) -> DirSource {
    DirSource::open(&DirSourceConfig {
        path: path.to_path_buf(),
        watch: false,
        interval: Duration::from_secs(30),
    })
    .expect("open folder")
}

fn rejected(outcome: Result<PollOutcome, SourceError>) -> Arc<Rejection> {
    match outcome {
        Ok(PollOutcome::Rejected { rejection, .. }) => rejection,
        other => panic!("expected a rejected revision, got {other:?}"),
    }
}

fn accept(outcome: Result<PollOutcome, SourceError>) {
    match outcome {
        Ok(PollOutcome::Accepted { .. }) => {}
        other => panic!("expected an accepted revision, got {other:?}"),
    }
}

/// The problem naming `path`, or a panic listing them all.
fn problem_at<'a>(rejection: &'a Rejection, path: &str) -> &'a phoenix_source::Problem {
    rejection
        .problems
        .iter()
        .find(|p| p.path.as_deref() == Some(path))
        .unwrap_or_else(|| panic!("no problem names `{path}`: {:?}", rejection.problems))
}

/// Issue 17, defect 2: a link to a file or a folder outside the desired-state folder is
/// not followed; the revision is rejected naming the link, and the last good one stays.
#[test]
fn folder_links_leaving_the_folder_reject_the_revision_naming_the_link() {
    within(|| {
        let outside = tempfile::tempdir().expect("outside folder");
        std::fs::write(outside.path().join("stolen.yaml"), spec("stolen")).expect("write");
        std::fs::create_dir(outside.path().join("more")).expect("mkdir");
        std::fs::write(outside.path().join("more/other.yaml"), spec("other")).expect("write");
        let dir = tempfile::tempdir().expect("desired-state folder");
        std::fs::write(dir.path().join("web.yaml"), spec("web")).expect("write");
        let mut source = folder(dir.path());
        accept(source.poll());

        symlink(
            outside.path().join("stolen.yaml"),
            dir.path().join("link.yaml"),
        )
        .expect("link");
        symlink(outside.path().join("more"), dir.path().join("linked-dir")).expect("link");
        let rejection = rejected(source.poll());
        assert!(
            problem_at(&rejection, "link.yaml")
                .message
                .contains("outside"),
            "{rejection}"
        );
        assert!(
            problem_at(&rejection, "linked-dir")
                .message
                .contains("outside"),
            "{rejection}"
        );
        let current = source
            .current()
            .expect("the last good revision stays in force");
        assert_eq!(current.groups.len(), 1);

        // A link that stays inside the folder is followed.
        std::fs::remove_file(dir.path().join("link.yaml")).expect("unlink");
        std::fs::remove_file(dir.path().join("linked-dir")).expect("unlink");
        std::fs::create_dir(dir.path().join("real")).expect("mkdir");
        std::fs::write(dir.path().join("real/db.yaml"), spec("db")).expect("write");
        symlink(dir.path().join("real"), dir.path().join("alias")).expect("link");
        std::fs::remove_file(dir.path().join("real/db.yaml")).expect("rm");
        std::fs::write(dir.path().join("db-target"), spec("db")).expect("write");
        symlink("db-target", dir.path().join("db.yaml")).expect("relative link inside");
        accept(source.poll());
        assert_eq!(source.current().expect("accepted").groups.len(), 2);
    });
}

/// Issue 17, defect 2: a folder link loop is detected, not walked until the path is too
/// long (or forever).
#[test]
fn folder_link_loops_are_detected() {
    within(|| {
        let dir = tempfile::tempdir().expect("desired-state folder");
        std::fs::write(dir.path().join("web.yaml"), spec("web")).expect("write");
        std::fs::create_dir(dir.path().join("a")).expect("mkdir");
        symlink("..", dir.path().join("a/up")).expect("loop link");
        symlink(dir.path(), dir.path().join("self")).expect("loop link");
        let rejection = rejected(folder(dir.path()).poll());
        assert!(
            problem_at(&rejection, "a/up").message.contains("loop"),
            "{rejection}"
        );
        assert!(
            problem_at(&rejection, "self").message.contains("loop"),
            "{rejection}"
        );
    });
}

/// Issue 17, defect 2: a file that cannot be parsed is reported with at most a short,
/// escaped excerpt of its text: a secret in it never reaches the status API, SSE,
/// alerts or logs, and neither do terminal escape sequences.
#[test]
fn an_unparsable_file_is_echoed_only_as_a_short_escaped_excerpt() {
    within(|| {
        let secret = "AKIA".to_string() + &"S3CR3T".repeat(40);
        let dir = tempfile::tempdir().expect("desired-state folder");
        // An unknown top-level key, a bad group name and a key spelled with YAML escapes
        // that produce terminal control sequences: each used to be quoted whole.
        std::fs::write(dir.path().join("key.yaml"), format!("{secret}: [1]\n")).expect("write");
        std::fs::write(
            dir.path().join("name.yaml"),
            format!("apiVersion: phoenix/v1\nkind: InstanceGroup\nmetadata:\n  name: \"{secret}\"\nspec: {{}}\n"),
        )
        .expect("write");
        std::fs::write(
            dir.path().join("escape.yaml"),
            "\"\\e[2J\\e]0;owned\\a\": 1\n",
        )
        .expect("write");
        let rejection = rejected(folder(dir.path()).poll());
        assert_eq!(rejection.problems.len(), 3, "{rejection}");
        for problem in &rejection.problems {
            let message = &problem.message;
            assert!(!message.contains(&secret[..64]), "secret echoed: {message}");
            assert!(message.len() <= 300, "{} bytes: {message}", message.len());
            assert!(
                !message.chars().any(|c| c.is_control()),
                "control characters echoed: {message:?}"
            );
        }
    });
}

/// Issue 17, defect 3: a file's size is checked before it is read, and at most the
/// limit is read: a 20 GB (sparse) file is refused without being read.
#[test]
fn a_huge_file_is_refused_without_reading_it() {
    within(|| {
        let dir = tempfile::tempdir().expect("desired-state folder");
        std::fs::write(dir.path().join("web.yaml"), spec("web")).expect("write");
        let huge = std::fs::File::create(dir.path().join("huge.yaml")).expect("create");
        huge.set_len(20 * 1024 * 1024 * 1024)
            .expect("a sparse 20 GB file");
        let rejection = rejected(folder(dir.path()).poll());
        let problem = problem_at(&rejection, "huge.yaml");
        assert!(problem.message.contains("limited to"), "{rejection}");
    });
}

/// Issue 17, defect 3: a link to a `/proc` file that would block (or never end) is
/// never opened: it leaves the folder, so the revision is rejected naming it.
#[test]
fn a_link_to_a_blocking_proc_file_is_harmless() {
    within(|| {
        let dir = tempfile::tempdir().expect("desired-state folder");
        std::fs::write(dir.path().join("web.yaml"), spec("web")).expect("write");
        // Reading /proc/self/fd/0 of a test runner waits for input, /proc/kmsg blocks,
        // and neither has a size.
        symlink("/proc/self/fd/0", dir.path().join("stdin.yaml")).expect("link");
        symlink("/proc/kmsg", dir.path().join("kmsg.yaml")).expect("link");
        let rejection = rejected(folder(dir.path()).poll());
        problem_at(&rejection, "stdin.yaml");
        problem_at(&rejection, "kmsg.yaml");
    });
}

/// Issue 17, defect 9: a file name that is not UTF-8 rejects a folder revision (it was
/// silently skipped), naming the file with its bytes escaped.
#[test]
fn a_non_utf8_file_name_rejects_a_folder_revision() {
    within(|| {
        let dir = tempfile::tempdir().expect("desired-state folder");
        std::fs::write(dir.path().join("web.yaml"), spec("web")).expect("write");
        let name = std::ffi::OsStr::from_bytes(b"caf\xe9.yaml");
        std::fs::write(dir.path().join(name), spec("cafe")).expect("write");
        let rejection = rejected(folder(dir.path()).poll());
        assert!(rejection.primary().message.contains("UTF-8"), "{rejection}");
        assert_eq!(rejection.primary().path.as_deref(), Some("caf\\xe9.yaml"));
    });
}

/// Issue 17, defect 9: the same non-UTF-8 file name rejects a Git revision, as a
/// rejection naming the file (it was a read error that re-cloned on every poll).
#[test]
fn a_non_utf8_file_name_rejects_a_git_revision() {
    within(|| {
        let host = RepoHost::new();
        let remote = host.create("infra");
        let work = WorkRepo::new(&remote);
        work.write("groups/web.yaml", &spec("web"));
        work.commit("web");
        work.push();
        let cache = tempfile::tempdir().expect("cache folder");
        let config = GitSourceConfig {
            url: host.file_url("infra"),
            branch: None,
            reference: None,
            path: "groups".into(),
            interval: Duration::from_secs(30),
            auth: GitAuthConfig::default(),
            verify: None,
        };
        let mut source = GitSource::open(&config, cache.path()).expect("open");
        accept(source.poll());
        let name = std::ffi::OsStr::from_bytes(b"caf\xe9.yaml");
        std::fs::write(work.path().join("groups").join(name), spec("cafe")).expect("write");
        work.commit("a non-UTF-8 name");
        work.push();
        let rejection = rejected(source.poll());
        assert!(rejection.primary().message.contains("UTF-8"), "{rejection}");
        assert_eq!(
            rejection.primary().path.as_deref(),
            Some("groups/caf\\xe9.yaml")
        );
        assert_eq!(source.current().expect("in force").groups.len(), 1);
    });
}

/// Every error of a source, with its whole chain and its `Debug` form.
fn shown(err: &SourceError) -> String {
    let mut text = format!("{err:?} {err}");
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Issue 17, defect 4: credentials written into a git URL never appear in an error (and
/// so in the status API, alerts or logs), nor in the source's `Debug` output.
#[test]
fn credentials_in_git_urls_are_redacted_everywhere_a_url_is_printed() {
    within(|| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("bound").port();
        drop(listener);
        let cache = tempfile::tempdir().expect("cache folder");
        for url in [
            format!("http://deploy:hunter2-secret@127.0.0.1:{port}/infra.git"),
            format!("git://deploy:hunter2-secret@127.0.0.1:{port}/infra.git"),
            "https://deploy:hunter2-secret@[not a host/infra.git".to_string(),
        ] {
            let config = GitSourceConfig {
                url: url.clone(),
                branch: None,
                reference: None,
                path: "groups".into(),
                interval: Duration::from_secs(30),
                auth: GitAuthConfig::default(),
                verify: None,
            };
            let mut source = GitSource::open(&config, cache.path()).expect("open");
            assert!(!format!("{source:?}").contains("hunter2"), "{source:?}");
            let err = source.poll().expect_err("nothing listens there");
            let text = shown(&err);
            assert!(!text.contains("hunter2"), "credentials leaked: {text}");
            assert!(text.contains("***@"), "the URL is still named: {text}");
        }
    });
}
