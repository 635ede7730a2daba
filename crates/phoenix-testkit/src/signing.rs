//! Commit signing keys made by the real tools, for signature tests: [`SshSigner`]
//! (`ssh-keygen` key pairs, ed25519 or RSA) and [`GpgSigner`] (`gpg` keys in a temporary
//! `GNUPGHOME`), each able to sign a commit in a [`WorkRepo`] with `git commit -S`.
//! A missing tool panics with the package to install, never skips.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use crate::git::{WorkRepo, git};

/// How a commit gets signed: the `git -c` settings for `git commit -S`, and any
/// environment (`GNUPGHOME`) the signing program needs.
pub trait Signer {
    /// `-c key=value` settings for git.
    fn git_config(&self) -> Vec<String>;
    /// Environment for the signing program.
    fn env(&self) -> Vec<(String, PathBuf)>;
}

fn run(program: &str, args: &[&str], env: &[(String, PathBuf)]) -> String {
    let mut command = Command::new(program);
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap_or_else(|err| {
        panic!("cannot run `{program}` (install openssh-client and gnupg; scripts/setup.sh does): {err}")
    });
    assert!(
        output.status.success(),
        "`{program} {}` failed ({}):\n{}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// An SSH signing key made by `ssh-keygen` in a tempdir.
#[derive(Debug)]
pub struct SshSigner {
    dir: TempDir,
    key: PathBuf,
}

/// The SSH key types the tests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshKeyType {
    /// `ssh-keygen -t ed25519`.
    Ed25519,
    /// `ssh-keygen -t rsa -b 3072`.
    Rsa,
}

impl SshSigner {
    /// A new key pair without a passphrase.
    pub fn new(kind: SshKeyType) -> Self {
        let dir = tempfile::tempdir().expect("create a tempdir for an SSH key");
        let key = dir.path().join("id");
        let key_text = key.to_string_lossy().into_owned();
        let mut args = vec![
            "-q",
            "-N",
            "",
            "-C",
            "signer@phoenix.invalid",
            "-f",
            &key_text,
        ];
        match kind {
            SshKeyType::Ed25519 => args.extend(["-t", "ed25519"]),
            SshKeyType::Rsa => args.extend(["-t", "rsa", "-b", "3072"]),
        }
        run("ssh-keygen", &args, &[]);
        Self { dir, key }
    }

    /// The public key line (`ssh-ed25519 AAAA... comment`).
    pub fn public_key(&self) -> String {
        std::fs::read_to_string(self.key.with_extension("pub"))
            .expect("read the public key ssh-keygen wrote")
            .trim()
            .to_string()
    }

    /// An allowed-signers line for `principal`, with `options` (e.g.
    /// `namespaces="git"`) when not empty.
    pub fn allowed_signers_line(&self, principal: &str, options: &str) -> String {
        if options.is_empty() {
            format!("{principal} {}", self.public_key())
        } else {
            format!("{principal} {options} {}", self.public_key())
        }
    }

    /// The `SHA256:...` fingerprint, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        let public = self.key.with_extension("pub");
        let out = run(
            "ssh-keygen",
            &["-l", "-E", "sha256", "-f", &public.to_string_lossy()],
            &[],
        );
        out.split_whitespace()
            .nth(1)
            .expect("ssh-keygen -l prints bits, fingerprint, comment")
            .to_string()
    }

    /// The folder holding the key.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Signer for SshSigner {
    fn git_config(&self) -> Vec<String> {
        vec![
            "gpg.format=ssh".into(),
            format!("user.signingkey={}", self.key.display()),
        ]
    }

    fn env(&self) -> Vec<(String, PathBuf)> {
        Vec::new()
    }
}

/// An OpenPGP key made by `gpg` in a temporary `GNUPGHOME` (mode 700).
#[derive(Debug)]
pub struct GpgSigner {
    home: TempDir,
    email: String,
}

impl GpgSigner {
    /// A new key for `Name <email>`: `algo` is a `gpg --quick-gen-key` algorithm
    /// (`ed25519`, `rsa3072`), `usage` `sign` or `cert` (then call
    /// [`GpgSigner::add_signing_subkey`]), `expire` `never` or e.g. `1d`.
    pub fn new(name: &str, email: &str, algo: &str, usage: &str, expire: &str) -> Self {
        let home = tempfile::tempdir().expect("create a GNUPGHOME");
        set_private(home.path());
        let signer = Self {
            home,
            email: email.to_string(),
        };
        let uid = format!("{name} <{email}>");
        signer.gpg(&[
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            &uid,
            algo,
            usage,
            expire,
        ]);
        signer
    }

    /// Add a signing subkey (`gpg --quick-add-key FPR ed25519 sign`); git then signs
    /// with the subkey.
    pub fn add_signing_subkey(&self) -> &Self {
        let fpr = self.fingerprint();
        self.gpg(&[
            "--batch",
            "--passphrase",
            "",
            "--quick-add-key",
            &fpr,
            "ed25519",
            "sign",
            "never",
        ]);
        self
    }

    /// The primary key's fingerprint (40 upper-case hex digits).
    pub fn fingerprint(&self) -> String {
        let out = self.gpg(&["--batch", "--with-colons", "--fingerprint", &self.email]);
        out.lines()
            .find(|line| line.starts_with("fpr:"))
            .and_then(|line| line.split(':').nth(9))
            .expect("gpg lists the primary key's fingerprint")
            .to_string()
    }

    /// `gpg --armor --export` of the public key, subkeys included.
    pub fn armored_public_key(&self) -> String {
        self.gpg(&["--batch", "--armor", "--export", &self.email])
    }

    fn gpg(&self, args: &[&str]) -> String {
        run("gpg", args, &self.env())
    }
}

impl Signer for GpgSigner {
    fn git_config(&self) -> Vec<String> {
        vec![
            "gpg.format=openpgp".into(),
            format!("user.signingkey={}", self.email),
        ]
    }

    fn env(&self) -> Vec<(String, PathBuf)> {
        vec![("GNUPGHOME".into(), self.home.path().to_path_buf())]
    }
}

#[cfg(unix)]
fn set_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .expect("make GNUPGHOME private");
}

#[cfg(not(unix))]
fn set_private(_path: &Path) {}

impl WorkRepo {
    /// Commit everything, signed by `signer` (`git commit -S`); returns the commit id.
    pub fn commit_signed(&self, message: &str, signer: &dyn Signer) -> String {
        git(self.path(), &["add", "--all"]);
        let mut args: Vec<String> = Vec::new();
        for setting in signer.git_config() {
            args.push("-c".into());
            args.push(setting);
        }
        args.extend(["commit", "--quiet", "--allow-empty", "-S", "-m", message].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::git::git_with_env(self.path(), &args, &signer.env());
        self.head()
    }

    /// Write a copy of commit `id` whose message is `message` but whose `gpgsig` header
    /// is kept, as an attacker editing a signed commit would, and point `main` at it.
    /// Returns the forged commit's id.
    pub fn forge_from(&self, id: &str, message: &str) -> String {
        let raw = git(self.path(), &["cat-file", "commit", id]);
        let (headers, _) = raw
            .split_once("\n\n")
            .expect("a commit object has headers and a message");
        let forged = format!("{headers}\n\n{message}\n");
        let file = self.path().join(".git").join("FORGED_COMMIT");
        std::fs::write(&file, forged).expect("write the forged commit object");
        let new_id = git(
            self.path(),
            &["hash-object", "-t", "commit", "-w", &file.to_string_lossy()],
        );
        git(self.path(), &["reset", "--quiet", "--hard", &new_id]);
        new_id
    }
}
