//! Issue 18: commit signatures (`source.git.verify`) against real tools. Repositories are
//! built with the `git` CLI, commits signed by `ssh-keygen`-made ed25519 and RSA keys and
//! by `gpg`-made keys (temporary GNUPGHOME), and served by `git daemon` on loopback.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use phoenix_core::config::{GitAuthConfig, GitSourceConfig, GitVerifyConfig, VerifyMode};
use phoenix_source::{
    GitSource, PollOutcome, Rejection, Revision, RevisionId, SignatureKind, SourceError,
    SourceErrorKind,
};
use phoenix_testkit::git::{GitDaemon, RepoHost, WorkRepo};
use phoenix_testkit::signing::{GpgSigner, SshKeyType, SshSigner};

use crate::sources::within;

fn spec(name: &str, image: &str) -> String {
    format!(
        "apiVersion: phoenix/v1\nkind: InstanceGroup\nmetadata:\n  name: {name}\nspec:\n  provider: local\n  replicas: 1\n  template:\n    image: {image}\n    instanceType: t3.micro\n"
    )
}

/// A served repository and a folder for the trust files.
struct Fixture {
    _host: RepoHost,
    work: WorkRepo,
    daemon: GitDaemon,
    cache: tempfile::TempDir,
    trust: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let host = RepoHost::new();
        let bare = host.create("infra");
        let work = WorkRepo::new(&bare);
        let daemon = GitDaemon::start(host.path());
        Self {
            _host: host,
            work,
            daemon,
            cache: tempfile::tempdir().expect("cache tempdir"),
            trust: tempfile::tempdir().expect("trust tempdir"),
        }
    }

    fn allowed_signers(&self, lines: &[String]) -> PathBuf {
        let path = self.trust.path().join("allowed_signers");
        std::fs::write(&path, lines.join("\n") + "\n").expect("write allowed_signers");
        path
    }

    fn openpgp_keys(&self, armored: &[String]) -> PathBuf {
        let path = self.trust.path().join("trusted-keys.asc");
        std::fs::write(&path, armored.concat()).expect("write trusted keys");
        path
    }

    fn source(
        &self,
        mode: VerifyMode,
        allowed_signers: Option<PathBuf>,
        openpgp_keys: Option<PathBuf>,
    ) -> GitSource {
        let config = GitSourceConfig {
            url: self.daemon.url("infra"),
            branch: None,
            reference: None,
            path: "groups".into(),
            interval: Duration::from_secs(30),
            auth: GitAuthConfig::default(),
            verify: Some(Box::new(GitVerifyConfig {
                mode,
                allowed_signers,
                openpgp_keys,
            })),
        };
        GitSource::open(&config, self.cache.path()).expect("valid source config")
    }

    fn write(&self, image: &str) {
        self.work.write("groups/web.yaml", &spec("web", image));
    }
}

fn accepted(outcome: Result<PollOutcome, SourceError>) -> Arc<Revision> {
    match outcome {
        Ok(PollOutcome::Accepted { revision, .. }) => revision,
        other => panic!("expected an accepted revision, got {other:?}"),
    }
}

fn rejected(outcome: Result<PollOutcome, SourceError>) -> Arc<Rejection> {
    match outcome {
        Ok(PollOutcome::Rejected { rejection, .. }) => rejection,
        other => panic!("expected a rejected revision, got {other:?}"),
    }
}

/// The rejection blames `commit`, with no file position, and its message says `what`
/// and names the commit.
fn assert_blames(rejection: &Rejection, commit: &str, what: &str) {
    let problem = rejection.primary();
    assert_eq!(problem.commit, Some(RevisionId::new(commit)), "{problem:?}");
    assert_eq!(
        (problem.path.as_deref(), problem.line, problem.column),
        (None, None, None)
    );
    assert!(
        problem.message.contains(what),
        "`{}` should say `{what}`",
        problem.message
    );
    assert!(
        problem.message.contains(commit),
        "`{}` should name {commit}",
        problem.message
    );
}

/// The last good revision stays in force, carrying the rejection.
fn assert_kept(source: &GitSource, good: &str, rejected: &str) {
    let current = source.current().expect("a revision stays in force");
    assert_eq!(current.id.as_str(), good);
    let carried = current
        .rejection
        .as_ref()
        .expect("the rejection is carried");
    assert_eq!(carried.revision.as_str(), rejected);
}

#[test]
fn ssh_ed25519_signed_is_accepted_and_unsigned_is_rejected() {
    within(|| {
        let f = Fixture::new();
        let key = SshSigner::new(SshKeyType::Ed25519);
        let signers = f.allowed_signers(&[
            key.allowed_signers_line("alice@example.com", "namespaces=\"git\"")
        ]);
        let mut source = f.source(VerifyMode::Head, Some(signers), None);

        f.write("ami-1");
        let c1 = f.work.commit_signed("signed", &key);
        f.work.push();
        let revision = accepted(source.poll());
        assert_eq!(revision.id.as_str(), c1);
        let signature = revision.signature.as_ref().expect("the signer is recorded");
        assert_eq!(signature.kind, SignatureKind::Ssh);
        assert_eq!(signature.key, key.fingerprint());
        assert_eq!(signature.signer, "alice@example.com");

        f.write("ami-2");
        let c2 = f.work.commit("not signed");
        f.work.push();
        let rejection = rejected(source.poll());
        assert_blames(&rejection, &c2, "unsigned");
        assert_kept(&source, &c1, &c2);
        assert!(matches!(source.poll(), Ok(PollOutcome::Unchanged)));
    });
}

#[test]
fn ssh_rsa_signed_is_accepted() {
    within(|| {
        let f = Fixture::new();
        let key = SshSigner::new(SshKeyType::Rsa);
        let signers = f.allowed_signers(&[key.allowed_signers_line("ops@example.com", "")]);
        let mut source = f.source(VerifyMode::Head, Some(signers), None);
        f.write("ami-1");
        let c1 = f.work.commit_signed("signed with rsa", &key);
        f.work.push();
        let revision = accepted(source.poll());
        assert_eq!(revision.id.as_str(), c1);
        let signature = revision.signature.as_ref().expect("signed");
        assert_eq!(signature.key, key.fingerprint());
        assert_eq!(signature.signer, "ops@example.com");
    });
}

#[test]
fn unlisted_key_is_rejected_until_it_is_added() {
    within(|| {
        let f = Fixture::new();
        let trusted = SshSigner::new(SshKeyType::Ed25519);
        let stranger = SshSigner::new(SshKeyType::Ed25519);
        let line = trusted.allowed_signers_line("alice@example.com", "namespaces=\"git\"");
        let signers = f.allowed_signers(std::slice::from_ref(&line));
        let mut source = f.source(VerifyMode::Head, Some(signers), None);

        f.write("ami-1");
        let c1 = f.work.commit_signed("trusted", &trusted);
        f.work.push();
        accepted(source.poll());

        f.write("ami-2");
        let c2 = f.work.commit_signed("stranger", &stranger);
        f.work.push();
        let rejection = rejected(source.poll());
        assert_blames(&rejection, &c2, "unknown key");
        assert!(
            rejection
                .primary()
                .message
                .contains(&stranger.fingerprint())
        );
        assert_kept(&source, &c1, &c2);
        assert!(matches!(source.poll(), Ok(PollOutcome::Unchanged)));

        // A key listed for another namespace only is still unknown for git.
        f.allowed_signers(&[
            line.clone(),
            stranger.allowed_signers_line("bob@example.com", "namespaces=\"file\""),
        ]);
        let rejection = rejected(source.poll());
        assert_blames(&rejection, &c2, "not for namespace `git`");

        // Key rotation: listing the key has the same commit evaluated again.
        f.allowed_signers(&[line, stranger.allowed_signers_line("bob@example.com", "")]);
        let revision = accepted(source.poll());
        assert_eq!(revision.id.as_str(), c2);
        assert_eq!(
            revision.signature.as_ref().map(|s| s.signer.as_str()),
            Some("bob@example.com")
        );
    });
}

#[test]
fn tampered_commit_is_rejected() {
    within(|| {
        let f = Fixture::new();
        let key = SshSigner::new(SshKeyType::Ed25519);
        let signers = f.allowed_signers(&[key.allowed_signers_line("alice@example.com", "")]);
        let mut source = f.source(VerifyMode::Head, Some(signers), None);
        f.write("ami-1");
        let c1 = f.work.commit_signed("first", &key);
        f.work.push();
        accepted(source.poll());

        f.write("ami-2");
        let honest = f.work.commit_signed("second", &key);
        // The same headers (tree, parent, gpgsig) with another message: the signature
        // no longer covers the content.
        let forged = f.work.forge_from(&honest, "second, edited after signing");
        assert_ne!(forged, honest);
        f.work.push();
        let rejection = rejected(source.poll());
        assert_blames(&rejection, &forged, "bad signature");
        assert_kept(&source, &c1, &forged);
    });
}

#[test]
fn expired_signer_is_rejected() {
    within(|| {
        let f = Fixture::new();
        let key = SshSigner::new(SshKeyType::Ed25519);
        let signers = f.allowed_signers(&[key.allowed_signers_line(
            "alice@example.com",
            "namespaces=\"git\",valid-before=\"20200101\"",
        )]);
        let mut source = f.source(VerifyMode::Head, Some(signers), None);
        f.write("ami-1");
        let c1 = f
            .work
            .commit_signed("signed by a key past its valid-before", &key);
        f.work.push();
        let rejection = rejected(source.poll());
        assert_blames(&rejection, &c1, "expired key");
        assert!(
            rejection.primary().message.contains("2020-01-01"),
            "{}",
            rejection.primary().message
        );
        assert!(source.current().is_none(), "nothing was ever accepted");
    });
}

#[test]
fn all_mode_catches_an_unsigned_commit_in_the_middle_of_a_push() {
    within(|| {
        let f = Fixture::new();
        let key = SshSigner::new(SshKeyType::Ed25519);
        let signers = f.allowed_signers(&[key.allowed_signers_line("alice@example.com", "")]);
        let mut all = f.source(VerifyMode::All, Some(signers.clone()), None);

        f.write("ami-1");
        let c1 = f.work.commit_signed("first", &key);
        f.work.push();
        accepted(all.poll());

        f.write("ami-2");
        let c2 = f.work.commit("unsigned in the middle");
        f.write("ami-3");
        let c3 = f.work.commit_signed("signed head", &key);
        f.work.push();
        let rejection = rejected(all.poll());
        assert_eq!(rejection.revision.as_str(), c3);
        assert_blames(&rejection, &c2, "unsigned");
        assert_kept(&all, &c1, &c3);

        // `head` mode looks at the head only and takes the same push.
        let head_cache = tempfile::tempdir().expect("cache");
        let config = GitSourceConfig {
            url: f.daemon.url("infra"),
            branch: None,
            reference: None,
            path: "groups".into(),
            interval: Duration::from_secs(30),
            auth: GitAuthConfig::default(),
            verify: Some(Box::new(GitVerifyConfig {
                mode: VerifyMode::Head,
                allowed_signers: Some(signers),
                openpgp_keys: None,
            })),
        };
        let mut head = GitSource::open(&config, head_cache.path()).expect("valid config");
        assert_eq!(accepted(head.poll()).id.as_str(), c3);

        // Every later signed commit is still rejected while the unsigned one is between
        // the last accepted commit and the head.
        f.write("ami-4");
        let c4 = f.work.commit_signed("signed on top", &key);
        f.work.push();
        let rejection = rejected(all.poll());
        assert_blames(&rejection, &c2, "unsigned");
        assert_eq!(rejection.revision.as_str(), c4);
    });
}

#[test]
fn all_mode_after_a_force_push_checks_every_commit_not_reachable_from_the_last_accepted() {
    within(|| {
        let f = Fixture::new();
        let key = SshSigner::new(SshKeyType::Ed25519);
        let signers = f.allowed_signers(&[key.allowed_signers_line("alice@example.com", "")]);
        let mut source = f.source(VerifyMode::All, Some(signers), None);

        f.write("ami-1");
        let c1 = f.work.commit_signed("base", &key);
        f.write("ami-2");
        let c2 = f.work.commit_signed("accepted tip", &key);
        f.work.push();
        assert_eq!(accepted(source.poll()).id.as_str(), c2);

        // Rewrite history from c1: an unsigned commit, then a signed head, force-pushed.
        f.work.reset_hard(&c1);
        f.write("ami-3");
        let rewritten = f.work.commit("rewritten, unsigned");
        f.write("ami-4");
        let head = f.work.commit_signed("rewritten head", &key);
        f.work.push();
        let rejection = rejected(source.poll());
        assert_eq!(rejection.revision.as_str(), head);
        assert_blames(&rejection, &rewritten, "unsigned");
        assert_kept(&source, &c2, &head);

        // A fully signed rewrite is accepted.
        f.work.reset_hard(&c1);
        f.write("ami-5");
        f.work.commit_signed("rewritten again, signed", &key);
        f.write("ami-6");
        let signed_head = f.work.commit_signed("signed head", &key);
        f.work.push();
        assert_eq!(accepted(source.poll()).id.as_str(), signed_head);
    });
}

#[test]
fn openpgp_primary_key_and_signing_subkey_are_accepted_and_unknown_keys_rejected() {
    within(|| {
        let f = Fixture::new();
        let primary = GpgSigner::new("Alice Ops", "alice@example.com", "ed25519", "sign", "never");
        let with_subkey = GpgSigner::new("Bob Ops", "bob@example.com", "ed25519", "cert", "never");
        with_subkey.add_signing_subkey();
        let stranger = GpgSigner::new("Eve", "eve@example.com", "rsa3072", "sign", "never");
        let keys = f.openpgp_keys(&[
            primary.armored_public_key(),
            with_subkey.armored_public_key(),
        ]);
        let mut source = f.source(VerifyMode::Head, None, Some(keys));

        f.write("ami-1");
        let c1 = f.work.commit_signed("signed by a primary key", &primary);
        f.work.push();
        let revision = accepted(source.poll());
        assert_eq!(revision.id.as_str(), c1);
        let signature = revision.signature.as_ref().expect("signed");
        assert_eq!(signature.kind, SignatureKind::Openpgp);
        assert_eq!(signature.key, primary.fingerprint());
        assert_eq!(signature.signer, "Alice Ops <alice@example.com>");

        f.write("ami-2");
        let c2 = f.work.commit_signed("signed by a subkey", &with_subkey);
        f.work.push();
        let revision = accepted(source.poll());
        assert_eq!(revision.id.as_str(), c2);
        let signature = revision.signature.as_ref().expect("signed");
        assert_eq!(signature.key, with_subkey.fingerprint());
        assert_eq!(signature.signer, "Bob Ops <bob@example.com>");

        f.write("ami-3");
        let c3 = f.work.commit_signed("signed by an unknown key", &stranger);
        f.work.push();
        let rejection = rejected(source.poll());
        assert_blames(&rejection, &c3, "unknown key");
        assert!(
            rejection
                .primary()
                .message
                .contains(&stranger.fingerprint()),
            "{}",
            rejection.primary().message
        );

        f.write("ami-4");
        let honest = f.work.commit_signed("about to be tampered with", &primary);
        let forged = f.work.forge_from(&honest, "tampered");
        f.work.push();
        let rejection = rejected(source.poll());
        assert_blames(&rejection, &forged, "bad signature");

        f.write("ami-5");
        let c5 = f.work.commit("unsigned");
        f.work.push();
        assert_blames(&rejected(source.poll()), &c5, "unsigned");
        assert_kept(&source, &c2, &c5);
    });
}

#[test]
fn broken_trust_files_are_config_errors_naming_the_file_and_line() {
    within(|| {
        let f = Fixture::new();
        let key = SshSigner::new(SshKeyType::Ed25519);
        let signers = f.allowed_signers(&[
            "# team keys".into(),
            key.allowed_signers_line("ca@example.com", "cert-authority"),
        ]);
        let mut source = f.source(VerifyMode::Head, Some(signers.clone()), None);
        f.write("ami-1");
        f.work.commit_signed("signed", &key);
        f.work.push();
        let err = source.poll().expect_err("a cert-authority line is refused");
        assert_eq!(err.kind(), SourceErrorKind::Config);
        let text = err.to_string();
        assert!(text.contains(&format!("{}:2", signers.display())), "{text}");
        assert!(text.contains("cert-authority"), "{text}");
        assert!(source.current().is_none());

        let missing = f
            .source(
                VerifyMode::Head,
                Some(Path::new("/nonexistent/allowed").into()),
                None,
            )
            .poll()
            .expect_err("a missing trust file is an error");
        assert_eq!(missing.kind(), SourceErrorKind::Local);

        // Fixed: the same commit is accepted.
        f.allowed_signers(&[key.allowed_signers_line("alice@example.com", "")]);
        accepted(source.poll());
    });
}
