//! Issue 17, defect 9: the state folder and the database are private to their owner.

use std::os::unix::fs::PermissionsExt as _;

use phoenix_store::{Store, StoreOptions};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .expect("exists")
        .permissions()
        .mode()
        & 0o777
}

/// Issue 17, defect 9: a new state folder is `0700` and the database with its WAL
/// files `0600`, whatever the umask.
#[test]
fn state_folder_and_database_are_created_private() {
    let base = tempfile::tempdir().expect("tempdir");
    let state = base.path().join("state/nested");
    let store = Store::open(&state, StoreOptions::default()).expect("open");
    assert_eq!(mode(&state), 0o700, "state folder");
    for entry in std::fs::read_dir(&state).expect("list") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
    drop(store);
}
