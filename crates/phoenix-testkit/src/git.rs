//! Real Git repositories for tests: [`WorkRepo`] builds commits in a tempdir with the
//! `git` CLI and pushes them to a bare repository; [`GitDaemon`] serves a folder of bare
//! repositories over `git://` on a free loopback port and is killed (by PID) and reaped
//! on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::net::{free_port, wait_for_tcp};

/// Run `git` in `dir`, panicking with its output on failure. Returns trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    git_with_env(dir, args, &[])
}

/// [`git`] with extra environment variables (e.g. `GNUPGHOME` for signing).
pub fn git_with_env(dir: &Path, args: &[&str], env: &[(String, PathBuf)]) -> String {
    let mut command = Command::new("git");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
        .output()
        .unwrap_or_else(|err| panic!("cannot run `git {}`: {err}", args.join(" ")));
    assert!(
        output.status.success(),
        "`git {}` in {} failed ({}):\n{}{}",
        args.join(" "),
        dir.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A folder holding bare repositories, the `--base-path` of a [`GitDaemon`].
#[derive(Debug)]
pub struct RepoHost {
    dir: TempDir,
}

impl RepoHost {
    /// An empty folder of repositories.
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("create a tempdir for bare repositories"),
        }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Create the bare repository `<name>.git` and return its path.
    pub fn create(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.git"));
        git(
            self.dir.path(),
            &[
                "init",
                "--quiet",
                "--bare",
                "--initial-branch=main",
                &path.to_string_lossy(),
            ],
        );
        path
    }

    /// The `file://` URL of repository `name`.
    pub fn file_url(&self, name: &str) -> String {
        format!(
            "file://{}",
            self.dir.path().join(format!("{name}.git")).display()
        )
    }
}

impl Default for RepoHost {
    fn default() -> Self {
        Self::new()
    }
}

/// A working repository in a tempdir whose `origin` is a bare repository.
#[derive(Debug)]
pub struct WorkRepo {
    dir: TempDir,
}

impl WorkRepo {
    /// A fresh repository on branch `main` whose `origin` is `remote` (a path or URL).
    pub fn new(remote: &Path) -> Self {
        let dir = tempfile::tempdir().expect("create a tempdir for a work repository");
        let path = dir.path();
        git(path, &["init", "--quiet", "--initial-branch=main"]);
        git(path, &["config", "user.name", "Phoenix Test"]);
        git(path, &["config", "user.email", "test@phoenix.invalid"]);
        git(path, &["config", "commit.gpgsign", "false"]);
        git(
            path,
            &["remote", "add", "origin", &remote.to_string_lossy()],
        );
        Self { dir }
    }

    /// The working tree.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Write a file (creating folders).
    pub fn write(&self, rel: &str, contents: &str) -> &Self {
        let path = self.dir.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create folders in the work tree");
        }
        std::fs::write(&path, contents).expect("write a file in the work tree");
        self
    }

    /// Delete a file.
    pub fn remove(&self, rel: &str) -> &Self {
        std::fs::remove_file(self.dir.path().join(rel)).expect("remove a file from the work tree");
        self
    }

    /// Rename a file (creating folders).
    pub fn rename(&self, from: &str, to: &str) -> &Self {
        let to_path = self.dir.path().join(to);
        if let Some(parent) = to_path.parent() {
            std::fs::create_dir_all(parent).expect("create folders in the work tree");
        }
        std::fs::rename(self.dir.path().join(from), to_path).expect("rename in the work tree");
        self
    }

    /// Commit everything; returns the new commit id.
    pub fn commit(&self, message: &str) -> String {
        git(self.path(), &["add", "--all"]);
        git(
            self.path(),
            &["commit", "--quiet", "--allow-empty", "-m", message],
        );
        self.head()
    }

    /// The current commit id.
    pub fn head(&self) -> String {
        git(self.path(), &["rev-parse", "HEAD"])
    }

    /// Move `main` and the work tree to commit `to` (to rewrite history before a force-push).
    pub fn reset_hard(&self, to: &str) -> &Self {
        git(self.path(), &["reset", "--quiet", "--hard", to]);
        self
    }

    /// Create a lightweight (`annotated = false`) or annotated tag at HEAD.
    pub fn tag(&self, name: &str, annotated: bool) -> &Self {
        if annotated {
            git(self.path(), &["tag", "-a", "-m", name, name]);
        } else {
            git(self.path(), &["tag", name]);
        }
        self
    }

    /// Force-push `main` and every tag to `origin`.
    pub fn push(&self) -> &Self {
        git(
            self.path(),
            &[
                "push",
                "--quiet",
                "--force",
                "origin",
                "HEAD:refs/heads/main",
            ],
        );
        git(
            self.path(),
            &["push", "--quiet", "--force", "--tags", "origin"],
        );
        self
    }

    /// Force-push HEAD to another branch of `origin`.
    pub fn push_branch(&self, branch: &str) -> &Self {
        git(
            self.path(),
            &[
                "push",
                "--quiet",
                "--force",
                "origin",
                &format!("HEAD:refs/heads/{branch}"),
            ],
        );
        self
    }
}

/// `git daemon` serving a folder over `git://127.0.0.1:PORT/`, push enabled. Killed by
/// PID and reaped on drop.
#[derive(Debug)]
pub struct GitDaemon {
    child: Child,
    port: u16,
}

impl GitDaemon {
    /// Serve `base` on a free port. Panics if the daemon does not come up within 10 s.
    pub fn start(base: &Path) -> Self {
        Self::start_on(base, free_port())
    }

    /// Serve `base` on `port` (for restarting on the same address). Panics if the daemon
    /// does not come up within 10 s.
    pub fn start_on(base: &Path, port: u16) -> Self {
        // Run `git-daemon` itself, not `git daemon`: the `git` wrapper would fork it as a
        // child, and killing the wrapper's PID would leave the daemon listening.
        let exec_path = git(base, &["--exec-path"]);
        let program = Path::new(&exec_path).join("git-daemon");
        let mut child = Command::new(&program)
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg("--export-all")
            .arg("--enable=receive-pack")
            .arg("--reuseaddr")
            .arg("--informative-errors")
            .arg(base)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start `{}`: {err}", program.display()));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        // Fail fast if the daemon died (port taken, git missing the daemon command).
        std::thread::sleep(Duration::from_millis(20));
        if let Some(status) = child.try_wait().expect("poll git daemon") {
            panic!("`git daemon` on port {port} exited at once with {status}");
        }
        wait_for_tcp(addr, Duration::from_secs(10), "git daemon");
        Self { child, port }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `git://` URL of repository `<name>.git`.
    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}.git", self.port)
    }

    /// Stop the daemon now and wait for it to exit.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        // SIGKILL by PID; then reap it so the port is free for a restart.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
