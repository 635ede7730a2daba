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

    #[test]
    fn no_window_blocks_nothing_and_changes_only_when_an_override_ends() {
        let store = Store::open_in_memory(Default::default()).expect("store");
        let w = LoopWindows::load(&[], &store);
        let view = w.view(names(&["web"]).iter(), t("2026-03-14T12:00:00Z"));
        assert_eq!(view.status, WindowsStatus::default());
    }
}
