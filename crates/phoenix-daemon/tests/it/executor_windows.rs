//! Change windows in the executor (design section 14, issue 21 item 2): a rolling
//! replacement that is running when a deny window opens stops at its next launch and
//! waits, never below its floor, and finishes once the window closes.

use std::time::{Duration, SystemTime};

use phoenix_core::window::{WindowConfig, WindowKind};
use phoenix_daemon::executor::WindowGate;

use crate::executor_support::*;

fn at(rfc3339: &str) -> SystemTime {
    SystemTime::from(rfc3339.parse::<jiff::Timestamp>().expect("timestamp"))
}

fn freeze() -> Vec<WindowConfig> {
    vec![WindowConfig {
        kind: WindowKind::Deny,
        schedule: "0 18 * * 5".into(),
        duration: Duration::from_secs(62 * 3600),
        timezone: "Europe/Berlin".into(),
        groups: vec!["*".into()],
    }]
}

#[tokio::test(start_paused = true)]
async fn a_running_replacement_stops_at_its_next_launch_while_a_deny_window_is_open() {
    // A canary baking for an hour holds the rollout between batches when the window
    // opens (the sim's instances are healthy at once, so nothing else would).
    let old = G {
        strategy: "canary",
        bake: "1h",
        ..G::default()
    };
    let new = G {
        image: "ami-new",
        ..old.clone()
    };
    let mut w = World::new(&[]).await;
    w.seed(&old).await;
    w.config.windows = freeze();
    w.exec.set_windows(WindowGate::new(&freeze()));
    let new_count = |members: &[phoenix_core::model::Instance]| {
        members
            .iter()
            .filter(|i| i.image.as_str() == "ami-new")
            .count()
    };
    // Friday 2026-03-13, 15:30 UTC: the canary launches and bakes until 16:30; the
    // window opens at 17:00 UTC (18:00 in Berlin).
    w.now = at("2026-03-13T15:30:00Z");
    w.plan_and_submit(&[new.parsed()], "c1").await;
    w.advance().await;
    let members = w.members("web").await;
    assert_eq!((new_count(&members), members.len()), (1, 4), "{members:?}");

    // The window opens: passes go by, the plan launches nothing more and the group keeps
    // its three healthy instances.
    w.now = at("2026-03-13T17:00:00Z");
    for _ in 0..10 {
        w.plan_and_submit(&[new.parsed()], "c1").await;
        let wake = w.advance().await;
        assert!(wake.is_some(), "the held plan asks to be looked at again");
        let members = w.members("web").await;
        assert_eq!(
            new_count(&members),
            1,
            "no launch in the window: {members:?}"
        );
        assert_eq!(members.len(), 3, "never below the floor: {members:?}");
        w.now += Duration::from_secs(30);
    }
    let active = w.store.unfinished_plans().expect("plans");
    assert_eq!(
        active.len(),
        1,
        "the plan waits, it is not failed or dropped"
    );

    // Monday 07:00 UTC the window closes and the rollout finishes.
    w.now = at("2026-03-16T07:00:00Z");
    assert!(w.converge(&[new.parsed()], "c1", 100).await);
    let members = w.members("web").await;
    assert_eq!(new_count(&members), 3, "{members:?}");
}

#[tokio::test(start_paused = true)]
async fn capacity_healing_runs_inside_a_deny_window() {
    let g = G {
        replicas: 2,
        ..G::default()
    };
    let mut w = World::new(&[]).await;
    w.config.windows = freeze();
    w.exec.set_windows(WindowGate::new(&freeze()));
    // Inside the window: a new group's missing replicas are launched all the same.
    w.now = at("2026-03-14T12:00:00Z");
    assert!(w.converge(&[g.parsed()], "c1", 50).await);
    assert_eq!(w.members("web").await.len(), 2);
}
