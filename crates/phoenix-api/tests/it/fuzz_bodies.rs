//! Issue 17: the bodies of the fuzz targets of this crate (webhook_github, webhook_gitlab, webhook_gitea) run as ordinary
//! tests on stable: over the committed corpus (`fuzz/corpus/<target>/`), over
//! mutations of it and over random bytes (proptest). `scripts/fuzz.sh` runs the same
//! functions under libFuzzer; any crash it finds is added to the corpus, and so here.

use std::path::PathBuf;

use proptest::prelude::*;

/// Every file of `fuzz/corpus/<target>/`, sorted by name; panics when there is none.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("corpus folder {}: {err}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a corpus entry").path();
            let name = path
                .file_name()
                .expect("a name")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&path).expect("read a corpus file"))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus of `{target}` is empty");
    files
}

/// `seed` with each edit applied: overwrite (kind 0), insert (1) or remove (2) a byte.
fn mutate(seed: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for &(position, byte, kind) in edits {
        let at = position % (out.len() + 1);
        match kind % 3 {
            0 if at < out.len() => out[at] = byte,
            2 if at < out.len() => {
                out.remove(at);
            }
            _ => out.insert(at, byte),
        }
    }
    out
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..16)
}

/// Issue 17: target `webhook_github` over its corpus.
#[test]
fn webhook_github_corpus() {
    for (name, bytes) in corpus("webhook_github") {
        eprintln!("webhook_github: {name}");
        webhook_github(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Issue 17: target `webhook_github` on mutations of its corpus.
    #[test]
    fn webhook_github_mutated(seed in any::<prop::sample::Index>(), edits in edits()) {
        let files = corpus("webhook_github");
        let (_, bytes) = &files[seed.index(files.len())];
        webhook_github(&mutate(bytes, &edits));
    }

    /// Issue 17: target `webhook_github` on random bytes.
    #[test]
    fn webhook_github_random(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        webhook_github(&bytes);
    }
}

/// Issue 17: target `webhook_gitlab` over its corpus.
#[test]
fn webhook_gitlab_corpus() {
    for (name, bytes) in corpus("webhook_gitlab") {
        eprintln!("webhook_gitlab: {name}");
        webhook_gitlab(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Issue 17: target `webhook_gitlab` on mutations of its corpus.
    #[test]
    fn webhook_gitlab_mutated(seed in any::<prop::sample::Index>(), edits in edits()) {
        let files = corpus("webhook_gitlab");
        let (_, bytes) = &files[seed.index(files.len())];
        webhook_gitlab(&mutate(bytes, &edits));
    }

    /// Issue 17: target `webhook_gitlab` on random bytes.
    #[test]
    fn webhook_gitlab_random(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        webhook_gitlab(&bytes);
    }
}

/// Issue 17: target `webhook_gitea` over its corpus.
#[test]
fn webhook_gitea_corpus() {
    for (name, bytes) in corpus("webhook_gitea") {
        eprintln!("webhook_gitea: {name}");
        webhook_gitea(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Issue 17: target `webhook_gitea` on mutations of its corpus.
    #[test]
    fn webhook_gitea_mutated(seed in any::<prop::sample::Index>(), edits in edits()) {
        let files = corpus("webhook_gitea");
        let (_, bytes) = &files[seed.index(files.len())];
        webhook_gitea(&mutate(bytes, &edits));
    }

    /// Issue 17: target `webhook_gitea` on random bytes.
    #[test]
    fn webhook_gitea_random(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        webhook_gitea(&bytes);
    }
}

fn webhook_github(data: &[u8]) {
    phoenix_api::fuzz::webhook(phoenix_api::Forge::Github, data);
}

fn webhook_gitlab(data: &[u8]) {
    phoenix_api::fuzz::webhook(phoenix_api::Forge::Gitlab, data);
}

fn webhook_gitea(data: &[u8]) {
    phoenix_api::fuzz::webhook(phoenix_api::Forge::Gitea, data);
}
