//! Change windows (design section 14, issue 21 item 2) on a fixed clock: deny and allow
//! windows, deny winning, group globs, the override, daylight-saving changes in the
//! window's time zone (Europe/Berlin, last Sundays of March and October 2026), config
//! validation, and the planner holding replacements and prunes but never capacity
//! healing.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime};

use crate::planner_support::*;
use phoenix_core::config::Config;
use phoenix_core::model::InstanceHealth;
use phoenix_core::plan::{GroupStatus, PlanMemory, Step};
use phoenix_core::window::{Override, WindowConfig, WindowKind, Windows};

fn at(rfc3339: &str) -> SystemTime {
    SystemTime::from(rfc3339.parse::<jiff::Timestamp>().unwrap())
}

fn window(
    kind: WindowKind,
    schedule: &str,
    duration: &str,
    tz: &str,
    groups: &[&str],
) -> WindowConfig {
    WindowConfig {
        kind,
        schedule: schedule.to_owned(),
        duration: phoenix_core::duration::parse(duration).unwrap(),
        timezone: tz.to_owned(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
    }
}

fn weekend_freeze() -> Windows {
    Windows::compile(&[window(
        WindowKind::Deny,
        "0 18 * * 5",
        "62h",
        "Europe/Berlin",
        &["web-*"],
    )])
    .unwrap()
}

#[test]
fn a_deny_window_blocks_its_groups_from_start_to_end() {
    let w = weekend_freeze();
    // Friday 2026-03-13 18:00 CET is 17:00 UTC; 62 hours later is Monday 07:00 UTC.
    let before = w.state("web-eu", at("2026-03-13T16:59:59Z"), None);
    assert!(!before.blocked);
    assert_eq!(
        w.next_change(at("2026-03-13T16:59:59Z")),
        Some(at("2026-03-13T17:00:00Z"))
    );
    let start = w.state("web-eu", at("2026-03-13T17:00:00Z"), None);
    assert!(start.blocked);
    assert_eq!(start.until, Some(at("2026-03-16T07:00:00Z")));
    let sunday = w.state("web-eu", at("2026-03-15T12:00:00Z"), None);
    assert_eq!(sunday.until, Some(at("2026-03-16T07:00:00Z")));
    assert!(
        !w.state("web-eu", at("2026-03-16T07:00:00Z"), None).blocked,
        "the end is open"
    );
    // The glob does not match api.
    assert!(!w.state("api", at("2026-03-14T12:00:00Z"), None).blocked);
}

#[test]
fn the_window_start_follows_the_wall_clock_across_daylight_saving_changes() {
    let w = weekend_freeze();
    // Friday 2026-03-27 18:00 CET = 17:00 UTC. Clocks go forward on Sunday 29 March at
    // 01:00 UTC; the window lasts 62 real hours, so it ends Monday 07:00 UTC = 09:00 CEST.
    let s = w.state("web-eu", at("2026-03-27T17:00:00Z"), None);
    assert!(s.blocked);
    assert_eq!(s.until, Some(at("2026-03-30T07:00:00Z")));
    // The next Friday's 18:00 is CEST: 16:00 UTC, an hour earlier in UTC.
    assert!(!w.state("web-eu", at("2026-04-03T15:59:59Z"), None).blocked);
    assert!(w.state("web-eu", at("2026-04-03T16:00:00Z"), None).blocked);
    assert_eq!(
        w.next_change(at("2026-04-01T00:00:00Z")),
        Some(at("2026-04-03T16:00:00Z"))
    );
    // October: Friday 23rd 18:00 CEST = 16:00 UTC; clocks go back on the 25th.
    let s = w.state("web-eu", at("2026-10-23T16:00:00Z"), None);
    assert_eq!(s.until, Some(at("2026-10-26T06:00:00Z")));
    // And the Friday after is CET again: 17:00 UTC.
    assert!(!w.state("web-eu", at("2026-10-30T16:59:59Z"), None).blocked);
    assert!(w.state("web-eu", at("2026-10-30T17:00:00Z"), None).blocked);
}

#[test]
fn a_start_in_a_skipped_or_repeated_hour_happens_once() {
    // A nightly allow window at 02:30 Berlin time for one hour.
    let w = Windows::compile(&[window(
        WindowKind::Allow,
        "30 2 * * *",
        "1h",
        "Europe/Berlin",
        &["*"],
    )])
    .unwrap();
    // 29 March 2026 has no 02:30 (02:00 CET jumps to 03:00 CEST at 01:00 UTC): the start
    // is the first instant after the gap.
    let next = w.next_change(at("2026-03-28T12:00:00Z")).unwrap();
    assert!(
        next >= at("2026-03-29T01:00:00Z") && next <= at("2026-03-29T01:30:00Z"),
        "{}",
        phoenix_core::time::rfc3339(next)
    );
    assert!(!w.state("web", next, None).blocked);
    // 25 October 2026 has 02:30 twice (00:30 and 01:30 UTC): the window opens once, at the
    // first, and closes an hour later.
    let s = w.state("web", at("2026-10-25T00:10:00Z"), None);
    assert!(s.blocked, "before the window, an allow-only group waits");
    assert_eq!(s.until, Some(at("2026-10-25T00:30:00Z")));
    assert!(!w.state("web", at("2026-10-25T01:00:00Z"), None).blocked);
    let after = w.state("web", at("2026-10-25T01:30:00Z"), None);
    assert!(after.blocked, "the repeated 02:30 does not open it again");
    // The next opening is 26 October 02:30 CET = 01:30 UTC.
    assert_eq!(after.until, Some(at("2026-10-26T01:30:00Z")));
}

#[test]
fn allow_windows_confine_replacements_and_deny_wins() {
    let w = Windows::compile(&[
        window(WindowKind::Allow, "0 9 * * 1-5", "8h", "UTC", &["*"]),
        window(WindowKind::Deny, "0 12 24 12 *", "48h", "UTC", &["web"]),
    ])
    .unwrap();
    // Thursday 2026-12-17 10:00 UTC: inside the allow window.
    assert!(!w.state("web", at("2026-12-17T10:00:00Z"), None).blocked);
    // 18:00 is after it: blocked until Friday 09:00.
    let evening = w.state("web", at("2026-12-17T18:00:00Z"), None);
    assert_eq!(evening.until, Some(at("2026-12-18T09:00:00Z")));
    // Saturday: until Monday 09:00.
    let weekend = w.state("api", at("2026-12-19T10:00:00Z"), None);
    assert_eq!(weekend.until, Some(at("2026-12-21T09:00:00Z")));
    // Thursday 24 December 13:00: allow is open but the deny window wins, for web only.
    assert!(w.state("web", at("2026-12-24T13:00:00Z"), None).blocked);
    assert!(!w.state("api", at("2026-12-24T13:00:00Z"), None).blocked);
    // The deny window ends on the 26th at 12:00, a Saturday: web then waits for Monday.
    assert_eq!(
        w.state("web", at("2026-12-24T13:00:00Z"), None).until,
        Some(at("2026-12-28T09:00:00Z"))
    );
}

#[test]
fn an_override_lifts_every_window_until_it_ends() {
    let w = weekend_freeze();
    let now = at("2026-03-14T12:00:00Z");
    let lifted = w.state("web-eu", now, Some(at("2026-03-14T14:00:00Z")));
    assert!(!lifted.blocked);
    // After the override ends the window holds again.
    let after = w.state(
        "web-eu",
        at("2026-03-14T14:00:00Z"),
        Some(at("2026-03-14T14:00:00Z")),
    );
    assert!(after.blocked);
}

#[test]
fn evaluating_many_groups_at_one_instant_agrees_with_one_group_at_a_time() {
    // Groups matched by different sets of windows: the cached evaluation per distinct
    // set must answer exactly what the one-group evaluation does.
    let w = Windows::compile(&[
        window(
            WindowKind::Allow,
            "0 9 * * 1-5",
            "8h",
            "UTC",
            &["api-*", "db-?"],
        ),
        window(
            WindowKind::Deny,
            "0 18 * * 5",
            "62h",
            "Europe/Berlin",
            &["web-*"],
        ),
        window(WindowKind::Deny, "0 12 24 12 *", "48h", "UTC", &["*-eu"]),
    ])
    .unwrap();
    let groups = [
        "web-eu", "web-us", "api-eu", "api-us", "db-1", "db-10", "cache", "cache-eu",
    ];
    for now in [
        "2026-12-17T10:00:00Z",
        "2026-12-17T18:00:00Z",
        "2026-12-19T10:00:00Z",
        "2026-12-24T13:00:00Z",
    ] {
        for lifted in [None, Some(at("2026-12-24T14:00:00Z"))] {
            let mut many = w.at(at(now), lifted);
            for _round in 0..2 {
                for g in groups {
                    assert_eq!(
                        many.state(g),
                        w.state(g, at(now), lifted),
                        "{g} at {now}, override {lifted:?}"
                    );
                }
            }
        }
    }
    // The next change is the next window boundary, or the override's end when sooner.
    let now = at("2026-12-19T10:00:00Z");
    assert_eq!(w.at(now, None).next_change(), w.next_change(now));
    assert_eq!(
        w.at(now, Some(at("2026-12-19T11:00:00Z"))).next_change(),
        Some(at("2026-12-19T11:00:00Z"))
    );
    assert_eq!(
        w.at(now, Some(at("2026-12-19T09:00:00Z"))).next_change(),
        w.next_change(now),
        "an override that has ended changes nothing"
    );
    // No window: nothing is blocked and nothing changes.
    let none = Windows::compile(&[]).unwrap();
    assert_eq!(none.at(now, None).state("web"), Default::default());
    assert_eq!(none.at(now, None).next_change(), None);
}

#[test]
fn window_config_problems_name_the_entry_and_field() {
    let yaml = "owner: t\nsource: {dir: {path: d}}\nproviders: [{name: p, type: sim}]\nreconcile:\n  windows:\n    - {kind: deny, schedule: \"0 0 18 * * 5\", duration: 1h}\n    - {kind: allow, schedule: \"0 9 * * 1-5\", duration: 0s, timezone: Mars/Olympus}\n    - {kind: deny, schedule: \"61 9 * * *\", duration: 1h, groups: []}\n";
    let problems = Config::parse(yaml).unwrap_err();
    let text: Vec<String> = problems.iter().map(|p| p.message.clone()).collect();
    let has = |needle: &str| text.iter().any(|t| t.contains(needle));
    assert!(has("reconcile.windows[0].schedule"), "{text:?}");
    assert!(has("reconcile.windows[1].duration"), "{text:?}");
    assert!(
        has("reconcile.windows[1].timezone: `Mars/Olympus`"),
        "{text:?}"
    );
    assert!(has("reconcile.windows[2].schedule"), "{text:?}");
    assert!(has("reconcile.windows[2].groups"), "{text:?}");
    // Unknown keys are refused too, and a good config parses with defaults.
    let bad_key = "owner: t\nsource: {dir: {path: d}}\nproviders: [{name: p, type: sim}]\nreconcile: {windows: [{kind: deny, schedule: \"0 0 * * *\", duration: 1h, zone: UTC}]}\n";
    assert!(Config::parse(bad_key).is_err());
    let good = "owner: t\nsource: {dir: {path: d}}\nproviders: [{name: p, type: sim}]\nreconcile: {windows: [{kind: deny, schedule: \"0 18 * * 5\", duration: 62h}]}\n";
    let config = Config::parse(good).unwrap();
    assert_eq!(config.reconcile.windows[0].timezone, "UTC");
    assert_eq!(config.reconcile.windows[0].groups, ["*"]);
}

/// The planner under an open deny window (now() is 2025-01-01T00:00:00Z, a Wednesday).
fn frozen() -> Pass {
    let mut pass = Pass::default();
    pass.config.windows = vec![window(WindowKind::Deny, "0 0 * * 3", "24h", "UTC", &["*"])];
    pass
}

#[test]
fn a_deny_window_holds_replacements_but_heals_capacity() {
    let web = group("web", 3, "");
    let observed = vec![
        old("i-1", &web),
        old("i-2", &web),
        old("i-3", &web).health(InstanceHealth::Unhealthy),
    ];
    let outcome = run(
        &frozen(),
        std::slice::from_ref(&web),
        &[inventory(observed.clone())],
    );
    let report = &outcome.document.groups[0];
    // Only the unhealthy instance is replaced: one launch, one termination.
    let terminated: Vec<&String> = report
        .steps
        .iter()
        .flat_map(|s| match s {
            Step::Terminate { instance_ids } => instance_ids.iter().collect(),
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(terminated, ["i-3"], "{:?}", report.steps);
    assert_eq!(report.steps[0], Step::Launch { count: 1 });
    assert!(
        report
            .notes
            .iter()
            .any(|n| n == "2 replacement(s) held by a change window until 2025-01-02T00:00:00Z"),
        "{:?}",
        report.notes
    );
    // Without the window the whole group is replaced.
    let open = run(&Pass::default(), &[web], &[inventory(observed)]);
    let terminations: usize = open.document.groups[0]
        .steps
        .iter()
        .map(|s| match s {
            Step::Terminate { instance_ids } => instance_ids.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(terminations, 3);
}

#[test]
fn a_deny_window_still_launches_missing_replicas_and_holds_prunes() {
    let web = group("web", 2, "");
    let mut pass = frozen();
    // A second sighting makes the orphan prunable, but the window holds it.
    pass.memory = PlanMemory::default();
    let observed = vec![inst("i-9", "gone", "v1:sha256:00")];
    let first = run(
        &pass,
        std::slice::from_ref(&web),
        &[inventory(observed.clone())],
    );
    pass.memory = first.memory;
    let outcome = run(
        &pass,
        std::slice::from_ref(&web),
        &[inventory(observed.clone())],
    );
    let doc = &outcome.document;
    let web_report = doc
        .groups
        .iter()
        .find(|g| g.name.as_str() == "web")
        .unwrap();
    assert_eq!(
        web_report.steps[0],
        Step::Launch { count: 2 },
        "missing capacity is launched"
    );
    let gone = doc
        .groups
        .iter()
        .find(|g| g.name.as_str() == "gone")
        .unwrap();
    assert!(gone.steps.is_empty(), "{:?}", gone.steps);
    assert_eq!(gone.status, GroupStatus::Drifted);
    assert!(
        gone.notes
            .iter()
            .any(|n| n.starts_with("prune held by a change window")),
        "{:?}",
        gone.notes
    );
    // An override in memory lifts the window: the prune is planned.
    pass.memory.window_override = Some(Override {
        until: now() + Duration::from_secs(3600),
        reason: "hotfix".into(),
    });
    let lifted = run(&pass, std::slice::from_ref(&web), &[inventory(observed)]);
    let gone = lifted
        .document
        .groups
        .iter()
        .find(|g| g.name.as_str() == "gone")
        .unwrap();
    assert!(!gone.steps.is_empty(), "{:?}", gone.notes);
    assert!(
        lifted.memory.window_override.is_some(),
        "kept while in the future"
    );
}
