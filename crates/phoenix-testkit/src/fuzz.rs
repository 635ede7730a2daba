//! The stable half of the fuzz targets (issue 17): [`fuzz_body_tests!`] turns a target's
//! body (a plain function of bytes, the same one `fuzz/fuzz_targets/<target>.rs` calls
//! under libFuzzer) into three ordinary tests: over every file of the committed corpus
//! (`fuzz/corpus/<target>/`), over 256 proptest mutations of it, and over 256 random
//! inputs. A crash `scripts/fuzz.sh` finds is added to the corpus, and so runs here on
//! every `cargo test`. The calling crate needs `proptest` as a dev-dependency.

use std::path::PathBuf;

/// Every file of `fuzz/corpus/<target>/`, sorted by name; panics when there is none.
pub fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
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
pub fn mutate(seed: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
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

/// `fuzz_body_tests!(target, path::to::body)`: a module `target` with the tests
/// `corpus`, `mutated` and `random` of that body (see the module docs). `body` is a
/// path to a `fn(&[u8])`, resolved from inside the new module (`super::f` for a
/// function of the calling file).
#[macro_export]
macro_rules! fuzz_body_tests {
    ($target:ident, $body:path) => {
        mod $target {
            use proptest::prelude::*;

            /// The body over every file of its corpus.
            #[test]
            fn corpus() {
                for (name, bytes) in $crate::fuzz::corpus(stringify!($target)) {
                    eprintln!("{}: {name}", stringify!($target));
                    $body(&bytes);
                }
            }

            proptest! {
                #![proptest_config(ProptestConfig::with_cases(256))]

                /// The body on mutations of its corpus.
                #[test]
                fn mutated(
                    seed in any::<prop::sample::Index>(),
                    edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..16),
                ) {
                    let files = $crate::fuzz::corpus(stringify!($target));
                    let (_, bytes) = &files[seed.index(files.len())];
                    $body(&$crate::fuzz::mutate(bytes, &edits));
                }

                /// The body on random bytes.
                #[test]
                fn random(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                    $body(&bytes);
                }
            }
        }
    };
}
