//! Change-window overrides in the store (design section 14, issue 21): every override is
//! kept with who, when, why and until when, the newest is the one in force, they survive
//! reopening the database, and an override that could never be in force is refused.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use phoenix_store::{NewWindowOverride, Store, StoreError, StoreOptions};

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600 + secs)
}

fn new(until: SystemTime, reason: &str, by: &str) -> NewWindowOverride {
    NewWindowOverride {
        until,
        reason: reason.to_owned(),
        requested_by: by.to_owned(),
    }
}

#[test]
fn overrides_are_kept_newest_first_and_survive_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut store = Store::open(dir.path(), StoreOptions::default()).expect("open");
        assert_eq!(store.latest_window_override().expect("read"), None);
        let first = store
            .record_window_override(&new(t(3600), "hotfix CVE-1", "alice"), t(0))
            .expect("record");
        let second = store
            .record_window_override(&new(t(120), "end it early", "bob"), t(60))
            .expect("record");
        assert!(second.id > first.id);
        assert_eq!(first.created_at, t(0));
        assert_eq!(first.until, t(3600));
    }
    let store = Store::open(dir.path(), StoreOptions::default()).expect("reopen");
    let latest = store
        .latest_window_override()
        .expect("read")
        .expect("an override");
    assert_eq!(
        (
            latest.reason.as_str(),
            latest.requested_by.as_str(),
            latest.until,
            latest.created_at
        ),
        ("end it early", "bob", t(120), t(60))
    );
    let all = store.window_overrides(10).expect("list");
    let reasons: Vec<&str> = all.iter().map(|o| o.reason.as_str()).collect();
    assert_eq!(reasons, ["end it early", "hotfix CVE-1"]);
    assert_eq!(store.window_overrides(1).expect("list").len(), 1);
}

#[test]
fn an_override_in_the_past_or_without_a_reason_is_refused_and_nothing_is_written() {
    let mut store = Store::open_in_memory(StoreOptions::default()).expect("open");
    for (bad, now) in [
        (new(t(10), "x", "alice"), t(10)),
        (new(t(5), "x", "alice"), t(10)),
        (new(t(20), "  \n", "alice"), t(10)),
        (new(t(20), "x", ""), t(10)),
    ] {
        let err = store
            .record_window_override(&bad, now)
            .expect_err("refused");
        assert!(
            matches!(err, StoreError::InvalidWindowOverride { .. }),
            "{err:?}"
        );
    }
    assert!(store.window_overrides(10).expect("list").is_empty());
}
