//! The window override in the loop itself (design section 14, issue 21), in process on a
//! paused clock with the fake source and provider of `daemon_loop`: the command reaches
//! the loop and is answered with the stored record, streamed as a `window_override`
//! event, a pass follows, the published status
//! shows the override and the next change moves to its end, and a loop started again on
//! the same state folder (a restart) shows the same override from the store.
//!
//! The window (daily at midnight UTC for 48 hours) is open at any wall-clock instant, so
//! nothing depends on when the test runs (the loop reads the wall clock for windows;
//! tokio's paused clock drives only its timers).

use std::time::{Duration, SystemTime};

use phoenix_api::{ApiCommand, ApiEvent, WindowOverride};
use tokio::sync::oneshot;

use crate::daemon_loop::{Harness, Step, accepted, settle};

const WINDOW: &str = ", windows: [{kind: deny, schedule: \"0 0 * * *\", duration: 48h}]";

#[tokio::test(start_paused = true)]
async fn an_override_reaches_the_loop_is_published_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = vec![Step::Now(accepted("c1"))];
    let mut loop1 = Harness::start_in(dir.path(), WINDOW, Duration::from_secs(3600), first);
    loop1.passes_reach(1).await;
    settle().await;
    let before = loop1.snapshots.borrow().windows().clone();
    assert_eq!(before.lifted, None);
    let window_change = before
        .next_change
        .expect("the window closes or reopens within a day");

    let mut events = loop1.events.subscribe();
    let until = SystemTime::now() + Duration::from_secs(3600);
    let (reply, answer) = oneshot::channel();
    let request = WindowOverride {
        until,
        reason: "hotfix".into(),
        by: "alice".into(),
    };
    loop1
        .commands
        .try_send(ApiCommand::WindowOverride { request, reply })
        .expect("queue open");
    let answer = tokio::time::timeout(Duration::from_secs(60), answer)
        .await
        .expect("answered")
        .expect("reply sent")
        .expect("recorded");
    assert_eq!(
        (answer.reason.as_str(), answer.by.as_str()),
        ("hotfix", "alice")
    );
    // The event stream tells the dashboard.
    let event = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let e @ ApiEvent::WindowOverride { .. } = events.recv().await.expect("events open") {
                return e;
            }
        }
    })
    .await
    .expect("a window_override event");
    let json = serde_json::to_value(&event).expect("serialises");
    assert_eq!(json["type"], "window_override");
    assert_eq!(json["id"], answer.id);
    assert_eq!(json["by"], "alice");
    // A pass follows the command and publishes the override.
    loop1.passes_reach(2).await;
    settle().await;
    let after = loop1.snapshots.borrow().windows().clone();
    let lifted = after.lifted.as_ref().expect("the override in force");
    assert_eq!(
        (lifted.reason.as_str(), lifted.by.as_str()),
        ("hotfix", "alice")
    );
    assert_eq!(lifted.until, answer.until);
    assert_eq!(after.next_change, Some(window_change.min(answer.until)));
    loop1.shut_down().await;

    // A restart on the same state folder: the store's record is in force again.
    let second = vec![Step::Now(accepted("c1"))];
    let mut loop2 = Harness::start_in(dir.path(), WINDOW, Duration::from_secs(3600), second);
    loop2.passes_reach(1).await;
    settle().await;
    let restarted = loop2.snapshots.borrow().windows().clone();
    assert_eq!(restarted.lifted, after.lifted);
    loop2.shut_down().await;
}
