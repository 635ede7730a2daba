//! Change windows in the daemon loop (design section 14): the compiled
//! `reconcile.windows`, the operator's override, and what they mean for a pass.
//!
//! - The override (`POST /api/v1/windows/override`) is recorded in the store first
//!   (`window_overrides`, with who, when, why and until), then alerted once
//!   (`window_override`), then held here; nothing is lifted when the store refuses it.
//!   The newest recorded override is loaded on start, so a restart keeps it.
//! - Every pass hands the override to the planner (`PlanMemory::window_override`, which
//!   lifts every window before `until`) and to the executor's window gate, so a plan
//!   held at a launch resumes.
//! - Every publish evaluates each group's standing once ([`LoopWindows::view`]): the
//!   blocked groups with when they are unblocked, their count and the next change, for
//!   the status, the group detail and `phoenix_window_blocked_groups`. The evaluation is
//!   [`phoenix_core::window::Windows::at`], one schedule walk per distinct set of
//!   windows matching a group, so 100,000 groups cost their glob matches.

use std::time::SystemTime;

use phoenix_api::{
    BlockedGroup, OverrideStatus, WindowOverride, WindowOverrideAnswer, WindowOverrideError,
    WindowOverrideReply, WindowsStatus, WindowsView,
};
use phoenix_core::Text;
use phoenix_core::window::{Override, WindowConfig, Windows};
use phoenix_store::{NewWindowOverride, Store, WindowOverrideRecord};

use crate::alerts::Alerts;
use crate::error_chain;
use crate::executor::WindowGate;

/// The windows the loop obeys and the override in force.
#[derive(Debug, Default)]
pub struct LoopWindows {
    configs: Vec<WindowConfig>,
    compiled: Windows,
    /// The newest recorded override (it lifts windows only while `until` is ahead).
    lifted: Option<WindowOverrideRecord>,
}

/// What an override command needs from the loop besides the request.
#[derive(Debug)]
pub struct OverrideContext<'a> {
    /// The loop's store.
    pub store: &'a mut Store,
    /// The loop's alerts.
    pub alerts: &'a mut Alerts,
    /// The revision in force, for the alert's `commit`.
    pub commit: Option<&'a str>,
    /// Now.
    pub now: SystemTime,
}

impl LoopWindows {
    /// `reconcile.windows` (validated), and the newest override recorded in `store`.
    pub fn load(configs: &[WindowConfig], store: &Store) -> LoopWindows {
        let lifted = match store.latest_window_override() {
            Ok(lifted) => lifted,
            Err(err) => {
                tracing::error!(error = %error_chain(&err), "cannot read the window override; windows apply as configured");
                None
            }
        };
        if let Some(o) = &lifted {
            tracing::info!(until = %phoenix_core::time::rfc3339(o.until), by = %o.requested_by, "window override on record");
        }
        LoopWindows {
            configs: configs.to_vec(),
            compiled: Windows::compile_or_closed(configs),
            lifted,
        }
    }

    /// A reloaded config's windows (the override stays).
    pub fn reload(&mut self, configs: &[WindowConfig]) {
        if configs != self.configs.as_slice() {
            self.configs = configs.to_vec();
            self.compiled = Windows::compile_or_closed(configs);
        }
    }

    /// The override as the planner keeps it, while it lasts at `now`.
    pub fn memory_override(&self, now: SystemTime) -> Option<Override> {
        self.lifted
            .as_ref()
            .filter(|o| o.until > now)
            .map(|o| Override {
                until: o.until,
                reason: o.reason.clone(),
            })
    }

    /// The executor's gate: the windows, lifted before the override's end.
    pub fn gate(&self) -> WindowGate {
        let mut gate = WindowGate::new(&self.configs);
        gate.set_override(self.lifted.as_ref().map(|o| o.until));
        gate
    }

    /// Record `request` in the store, alert `window_override` once, and lift every
    /// window until its end. A store failure lifts nothing.
    pub fn apply_override(
        &mut self,
        cx: OverrideContext<'_>,
        request: &WindowOverride,
    ) -> WindowOverrideReply {
        let new = NewWindowOverride {
            until: request.until,
            reason: request.reason.clone(),
            requested_by: request.by.clone(),
        };
        let record = cx
            .store
            .record_window_override(&new, cx.now)
            .map_err(|err| WindowOverrideError::Store {
                reason: error_chain(&err),
            })?;
        tracing::warn!(id = record.id, until = %phoenix_core::time::rfc3339(record.until),
            by = %record.requested_by, reason = %record.reason, "every change window is lifted by an override");
        if let Err(err) = cx
            .alerts
            .window_override(cx.store, &record, cx.commit, cx.now)
        {
            tracing::error!(error = %error_chain(&err), "cannot enqueue the window_override alert");
        }
        let answer = WindowOverrideAnswer {
            id: record.id,
            until: record.until,
            reason: record.reason.clone(),
            by: record.requested_by.clone(),
            at: record.created_at,
        };
        self.lifted = Some(record);
        Ok(answer)
    }

    /// Every group's standing at `now`: the status fields and the blocked groups.
    pub fn view<'a>(&self, groups: impl Iterator<Item = &'a Text>, now: SystemTime) -> WindowsView {
        let lasting = self.lifted.as_ref().filter(|o| o.until > now);
        let status = |blocked_groups, next_change| WindowsStatus {
            blocked_groups,
            next_change,
            lifted: lasting.map(|o| OverrideStatus {
                until: o.until,
                reason: o.reason.clone(),
                by: o.requested_by.clone(),
                at: o.created_at,
            }),
        };
        if self.compiled.is_empty() {
            return WindowsView {
                status: status(0, lasting.map(|o| o.until)),
                blocked: Vec::new(),
            };
        }
        let mut at = self.compiled.at(now, lasting.map(|o| o.until));
        let blocked: Vec<BlockedGroup> = groups
            .filter_map(|name| {
                let state = at.state(name);
                state.blocked.then(|| BlockedGroup {
                    name: name.clone(),
                    until: state.until.map(Into::into),
                })
            })
            .collect();
        WindowsView {
            status: status(blocked.len(), at.next_change()),
            blocked,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use phoenix_core::window::WindowKind;

    use super::*;

    fn t(rfc3339: &str) -> SystemTime {
        phoenix_core::time::parse_rfc3339(rfc3339).expect("a time")
    }

    fn windows(store: &Store) -> LoopWindows {
        LoopWindows::load(
            &[WindowConfig {
                kind: WindowKind::Deny,
                schedule: "0 18 * * 5".into(),
                duration: Duration::from_secs(62 * 3600),
                timezone: "Europe/Berlin".into(),
                groups: vec!["web-*".into()],
            }],
            store,
        )
    }

    fn names(list: &[&str]) -> Vec<Text> {
        list.iter().map(|n| Text::from(*n)).collect()
    }

    #[test]
    fn the_view_lists_blocked_groups_with_their_end_and_the_next_change() {
        let store = Store::open_in_memory(Default::default()).expect("store");
        let w = windows(&store);
        let groups = names(&["api", "web-eu", "web-us"]);
        // Saturday 2026-03-14 12:00 UTC: inside the weekend freeze of web-*.
        let view = w.view(groups.iter(), t("2026-03-14T12:00:00Z"));
        let blocked: Vec<&str> = view.blocked.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(blocked, ["web-eu", "web-us"]);
        assert_eq!(
            view.blocked[0].until.map(SystemTime::from),
            Some(t("2026-03-16T07:00:00Z"))
        );
        assert_eq!(view.status.blocked_groups, 2);
        assert_eq!(view.status.next_change, Some(t("2026-03-16T07:00:00Z")));
        assert_eq!(view.status.lifted, None);
        // Thursday: nothing blocked, the next change is Friday's start.
        let view = w.view(groups.iter(), t("2026-03-19T12:00:00Z"));
        assert!(view.blocked.is_empty());
        assert_eq!(view.status.next_change, Some(t("2026-03-20T17:00:00Z")));
    }

    fn alerts() -> Alerts {
        use phoenix_core::config::{AlertConfig, AlertEvent, AlertType};
        let config = AlertConfig {
            name: "ops".into(),
            kind: AlertType::Webhook,
            url: "http://127.0.0.1:9/".into(),
            secret_env: None,
            events: vec![AlertEvent::WindowOverride],
            renotify: Duration::from_secs(3600),
            expire_after: Duration::from_secs(86_400),
        };
        let secrets = [("ops".to_owned(), b"secret".to_vec())].into();
        Alerts::new(&[config], &secrets, Default::default()).expect("alerts")
    }

    #[test]
    fn an_override_is_recorded_alerted_once_lifts_the_windows_and_is_loaded_again() {
        let mut store = Store::open_in_memory(Default::default()).expect("store");
        let mut alerts = alerts();
        let mut w = windows(&store);
        let now = t("2026-03-14T12:00:00Z");
        let request = WindowOverride {
            until: t("2026-03-14T14:00:00Z"),
            reason: "hotfix".into(),
            by: "alice".into(),
        };
        let cx = OverrideContext {
            store: &mut store,
            alerts: &mut alerts,
            commit: Some("c1"),
            now,
        };
        let answer = w.apply_override(cx, &request).expect("recorded");
        assert_eq!((answer.until, answer.at), (request.until, now));
        // One alert, naming the override, who and why.
        let due = store.due_alerts(now, 10).expect("outbox");
        assert_eq!(due.len(), 1);
        assert_eq!(
            due[0].delivery_id.as_str(),
            format!("window_override:{}:ops", answer.id)
        );
        let body: serde_json::Value = serde_json::from_str(&due[0].body).expect("json");
        assert_eq!(body["event"], "window_override");
        let message = body["message"].as_str().expect("message");
        assert!(
            message.contains("2026-03-14T14:00:00Z") && message.contains("alice: hotfix"),
            "{message}"
        );
        // Lifted for the planner, the gate and the view while it lasts.
        assert_eq!(w.memory_override(now).map(|o| o.until), Some(request.until));
        assert_eq!(w.memory_override(request.until), None, "not once it ended");
        let groups = names(&["web-eu"]);
        let view = w.view(groups.iter(), now);
        assert_eq!(view.status.blocked_groups, 0);
        assert_eq!(view.status.next_change, Some(request.until));
        assert_eq!(
            view.status.lifted.as_ref().map(|o| o.by.as_str()),
            Some("alice")
        );
        let after = w.view(groups.iter(), request.until);
        assert_eq!(after.status.blocked_groups, 1, "the window holds again");
        assert_eq!(after.status.lifted, None);
        // A restart loads it from the store.
        let reloaded = windows(&store);
        assert_eq!(
            reloaded.memory_override(now).map(|o| o.reason),
            Some("hotfix".into())
        );
        // A refused override lifts nothing and alerts nothing.
        let late = WindowOverride {
            until: now,
            ..request
        };
        let cx = OverrideContext {
            store: &mut store,
            alerts: &mut alerts,
            commit: None,
            now,
        };
        assert!(matches!(
            w.apply_override(cx, &late),
            Err(WindowOverrideError::Store { .. })
        ));
        assert_eq!(store.due_alerts(now, 10).expect("outbox").len(), 1);
        assert_eq!(
            w.memory_override(now).map(|o| o.until),
            Some(t("2026-03-14T14:00:00Z"))
        );
    }

    #[test]
    fn no_window_blocks_nothing_and_changes_only_when_an_override_ends() {
        let store = Store::open_in_memory(Default::default()).expect("store");
        let w = LoopWindows::load(&[], &store);
        let view = w.view(names(&["web"]).iter(), t("2026-03-14T12:00:00Z"));
        assert_eq!(view.status, WindowsStatus::default());
    }
}
