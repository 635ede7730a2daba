//! Issue 17: the bodies of the fuzz targets of this crate (spec, config) run as ordinary
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

/// Issue 17: target `spec` over its corpus.
#[test]
fn spec_corpus() {
    for (name, bytes) in corpus("spec") {
        eprintln!("spec: {name}");
        phoenix_core::fuzz::spec(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Issue 17: target `spec` on mutations of its corpus.
    #[test]
    fn spec_mutated(seed in any::<prop::sample::Index>(), edits in edits()) {
        let files = corpus("spec");
        let (_, bytes) = &files[seed.index(files.len())];
        phoenix_core::fuzz::spec(&mutate(bytes, &edits));
    }

    /// Issue 17: target `spec` on random bytes.
    #[test]
    fn spec_random(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        phoenix_core::fuzz::spec(&bytes);
    }
}

/// Issue 17: target `config` over its corpus.
#[test]
fn config_corpus() {
    for (name, bytes) in corpus("config") {
        eprintln!("config: {name}");
        phoenix_core::fuzz::config(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Issue 17: target `config` on mutations of its corpus.
    #[test]
    fn config_mutated(seed in any::<prop::sample::Index>(), edits in edits()) {
        let files = corpus("config");
        let (_, bytes) = &files[seed.index(files.len())];
        phoenix_core::fuzz::config(&mutate(bytes, &edits));
    }

    /// Issue 17: target `config` on random bytes.
    #[test]
    fn config_random(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        phoenix_core::fuzz::config(&bytes);
    }
}
