//! Change windows (design section 14): `reconcile.windows`, when replacements may start.
//!
//! A window is a 5-field cron schedule of start times in an IANA time zone (default UTC)
//! and a duration; it is open from each start for that long. `kind: deny` windows close
//! the groups they match (globs, default every group); if any `kind: allow` window
//! matches a group, replacements of that group start only while one of them is open. An
//! open deny window always wins. Windows gate only the start of replacements (`outdated`,
//! `modified`) and prunes; never capacity healing (`unhealthy`, `missing`) or rollbacks.
//! An override (`POST /api/v1/windows/override`) lifts every window until a given time.
//!
//! Evaluation is pure: [`Windows::state`] answers, for a group and the `now` the caller
//! passes, whether it is blocked and until when; [`Windows::next_change`] when any window
//! opens or closes next. Schedules are read by `croner` on `jiff` civil time, so a
//! daylight-saving change in the window's zone moves the instant, not the wall-clock
//! start (a start in a skipped hour runs at the first valid instant after it; a start in
//! a repeated hour runs once, at its first occurrence). jiff's time zone database is
//! compiled into the binary, so nothing here reads the disk.

use std::time::{Duration, SystemTime};

use croner::Cron;
use croner::parser::{CronParser, Seconds};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

/// Whether a window forbids or permits replacements while open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    /// While open, the groups it matches start no replacement and no prune.
    Deny,
    /// The groups it matches start replacements only while one of their allow windows
    /// is open.
    Allow,
}

/// One entry of `reconcile.windows`, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// `deny` or `allow`.
    pub kind: WindowKind,
    /// Cron schedule of the window's starts, 5 fields (minute hour day-of-month month
    /// day-of-week).
    pub schedule: String,
    /// How long the window stays open after each start (humantime).
    #[serde(with = "crate::duration")]
    pub duration: Duration,
    /// IANA time zone the schedule is read in. Default `UTC`.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Group name globs (`*`, `?`) the window applies to. Default: every group.
    #[serde(default = "default_groups")]
    pub groups: Vec<String>,
}

fn default_timezone() -> String {
    "UTC".to_owned()
}

fn default_groups() -> Vec<String> {
    vec!["*".to_owned()]
}

/// Why a window entry is refused; `index` is its position in `reconcile.windows`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// The schedule is not a 5-field cron expression.
    #[error(
        "reconcile.windows[{index}].schedule: `{schedule}` is not a 5-field cron schedule: {reason}"
    )]
    Schedule {
        /// Position.
        index: usize,
        /// As written.
        schedule: String,
        /// The parser's reason.
        reason: String,
    },
    /// The time zone is not in the IANA database.
    #[error("reconcile.windows[{index}].timezone: `{timezone}` is not an IANA time zone")]
    TimeZone {
        /// Position.
        index: usize,
        /// As written.
        timezone: String,
    },
    /// A zero duration never opens.
    #[error("reconcile.windows[{index}].duration: must be greater than 0s")]
    Duration {
        /// Position.
        index: usize,
    },
    /// No group glob, or an empty one.
    #[error("reconcile.windows[{index}].groups: {reason}")]
    Groups {
        /// Position.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
}

/// A window ready to evaluate.
#[derive(Debug, Clone)]
struct Window {
    kind: WindowKind,
    cron: Cron,
    duration: Duration,
    zone: TimeZone,
    groups: Vec<String>,
}

/// The compiled `reconcile.windows`.
#[derive(Debug, Clone, Default)]
pub struct Windows {
    windows: Vec<Window>,
    /// Set when the entries did not compile: everything counts as blocked (safety over
    /// speed; a validated config never gets here).
    closed: bool,
}

/// An operator's override: every window is lifted until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    /// The end of the override.
    #[serde(with = "crate::window::epoch_seconds")]
    pub until: SystemTime,
    /// Why, as the operator wrote it.
    pub reason: String,
}

/// `SystemTime` as whole seconds since the Unix epoch, for [`Override`].
pub mod epoch_seconds {
    use std::time::{Duration, SystemTime};

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialize.
    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let secs = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        s.serialize_u64(secs)
    }

    /// Deserialize.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let secs = u64::deserialize(d)?;
        Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
    }
}

/// Drop the replacements a blocked group may not start (`outdated`, `modified`) from its
/// removal candidates, noting how many wait and until when. Capacity healing
/// (`unhealthy`) and surplus stay; missing replicas are launched as usual.
pub fn hold_replacements(
    removals: &mut Vec<crate::drift::Member<'_>>,
    notes: &mut Vec<String>,
    state: WindowState,
) {
    use crate::drift::RemovalClass;
    if !state.blocked {
        return;
    }
    let before = removals.len();
    removals.retain(|m| {
        !matches!(
            m.removal,
            Some(RemovalClass::Outdated | RemovalClass::Modified)
        )
    });
    let held = before - removals.len();
    if held > 0 {
        notes.push(held_note(&format!("{held} replacement(s)"), state));
    }
}

/// The override in `memory` if it still lasts at `now`.
pub fn lasting_override(memory: &crate::plan::PlanMemory, now: SystemTime) -> Option<Override> {
    memory.window_override.clone().filter(|o| o.until > now)
}

/// "`what` held by a change window until <time>".
pub fn held_note(what: &str, state: WindowState) -> String {
    match state.until {
        Some(until) => format!("{what} held by a change window until {}", rfc3339(until)),
        None => format!("{what} held by a change window"),
    }
}

/// A group's standing at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowState {
    /// Replacements and prunes of the group may not start now.
    pub blocked: bool,
    /// When blocked: the first instant it is no longer blocked, if one comes within the
    /// search horizon (a year).
    pub until: Option<SystemTime>,
}

/// How far ahead `until` and `next_change` look.
const HORIZON: Duration = Duration::from_secs(366 * 24 * 3600);
/// At most this many window boundaries are walked looking for a change.
const MAX_STEPS: usize = 2048;

/// Check every window entry; the problems, one per entry and field.
pub fn validate(configs: &[WindowConfig]) -> Vec<WindowError> {
    match Windows::compile(configs) {
        Ok(_) => Vec::new(),
        Err(problems) => problems,
    }
}

impl Windows {
    /// Compile the entries of `reconcile.windows`, reporting every problem.
    pub fn compile(configs: &[WindowConfig]) -> Result<Windows, Vec<WindowError>> {
        let parser = CronParser::builder().seconds(Seconds::Disallowed).build();
        let mut windows = Vec::with_capacity(configs.len());
        let mut problems = Vec::new();
        for (index, c) in configs.iter().enumerate() {
            let fields = c.schedule.split_whitespace().count();
            let cron = if fields != 5 {
                problems.push(WindowError::Schedule {
                    index,
                    schedule: c.schedule.clone(),
                    reason: format!("it has {fields} fields"),
                });
                None
            } else {
                match parser.parse(&c.schedule) {
                    Ok(cron) => Some(cron),
                    Err(err) => {
                        problems.push(WindowError::Schedule {
                            index,
                            schedule: c.schedule.clone(),
                            reason: err.to_string(),
                        });
                        None
                    }
                }
            };
            let zone = match TimeZone::get(&c.timezone) {
                Ok(zone) => Some(zone),
                Err(_) => {
                    problems.push(WindowError::TimeZone {
                        index,
                        timezone: c.timezone.clone(),
                    });
                    None
                }
            };
            if c.duration.is_zero() {
                problems.push(WindowError::Duration { index });
            }
            if c.groups.is_empty() {
                problems.push(WindowError::Groups {
                    index,
                    reason: "must name at least one glob (omit it for every group)",
                });
            } else if c.groups.iter().any(String::is_empty) {
                problems.push(WindowError::Groups {
                    index,
                    reason: "a glob must not be empty",
                });
            }
            if let (Some(cron), Some(zone)) = (cron, zone) {
                windows.push(Window {
                    kind: c.kind,
                    cron,
                    duration: c.duration,
                    zone,
                    groups: c.groups.clone(),
                });
            }
        }
        if problems.is_empty() {
            Ok(Windows {
                windows,
                closed: false,
            })
        } else {
            Err(problems)
        }
    }

    /// [`Windows::compile`], or when an entry does not compile, windows that block
    /// everything.
    pub fn compile_or_closed(configs: &[WindowConfig]) -> Windows {
        Windows::compile(configs).unwrap_or(Windows {
            windows: Vec::new(),
            closed: true,
        })
    }

    /// Whether there is no window at all.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty() && !self.closed
    }

    /// Whether `group` may not start replacements or prunes at `now`, and until when.
    /// `override_until` (an operator's override, when still in the future) lifts every
    /// window before it.
    pub fn state(
        &self,
        group: &str,
        now: SystemTime,
        override_until: Option<SystemTime>,
    ) -> WindowState {
        let lifted = |t: SystemTime| override_until.is_some_and(|o| t < o);
        let blocked_at = |t: SystemTime| !lifted(t) && self.blocked_at(group, t);
        if !blocked_at(now) {
            return WindowState::default();
        }
        let mut t = now;
        for _ in 0..MAX_STEPS {
            let mut next = self.next_boundary(Some(group), t);
            if let Some(o) = override_until.filter(|o| *o > t) {
                next = Some(next.map_or(o, |n| n.min(o)));
            }
            let Some(next) = next.filter(|n| *n <= now + HORIZON) else {
                break;
            };
            if !blocked_at(next) {
                return WindowState {
                    blocked: true,
                    until: Some(next),
                };
            }
            t = next;
        }
        WindowState {
            blocked: true,
            until: None,
        }
    }

    /// The next instant after `now` at which any window opens or closes.
    pub fn next_change(&self, now: SystemTime) -> Option<SystemTime> {
        self.next_boundary(None, now)
            .filter(|n| *n <= now + HORIZON)
    }

    fn blocked_at(&self, group: &str, t: SystemTime) -> bool {
        if self.closed {
            return true;
        }
        let mut allow_exists = false;
        let mut allow_open = false;
        for w in self.windows.iter().filter(|w| w.matches(group)) {
            let open = w.open_at(t).is_some();
            match w.kind {
                WindowKind::Deny if open => return true,
                WindowKind::Deny => {}
                WindowKind::Allow => {
                    allow_exists = true;
                    allow_open |= open;
                }
            }
        }
        allow_exists && !allow_open
    }

    /// The earliest start or end after `t` of the windows matching `group` (all windows
    /// for `None`).
    fn next_boundary(&self, group: Option<&str>, t: SystemTime) -> Option<SystemTime> {
        self.windows
            .iter()
            .filter(|w| group.is_none_or(|g| w.matches(g)))
            .flat_map(|w| [w.open_at(t), w.next_start(t)])
            .flatten()
            .filter(|b| *b > t)
            .min()
    }
}

impl Window {
    fn matches(&self, group: &str) -> bool {
        self.groups.iter().any(|g| glob(g, group))
    }

    /// When the window is open at `t`: the end of the occurrence covering `t` (of the
    /// newest start at or before `t`; every occurrence lasts as long, so it ends last).
    fn open_at(&self, t: SystemTime) -> Option<SystemTime> {
        let zoned = to_timestamp(t)?.to_zoned(self.zone.clone());
        let start = self.cron.find_previous_occurrence(&zoned, true).ok()?;
        let end = from_timestamp(start.timestamp())? + self.duration;
        (t < end).then_some(end)
    }

    /// The first start strictly after `t`.
    fn next_start(&self, t: SystemTime) -> Option<SystemTime> {
        let zoned = to_timestamp(t)?.to_zoned(self.zone.clone());
        let next = self.cron.find_next_occurrence(&zoned, false).ok()?;
        from_timestamp(next.timestamp())
    }
}

/// RFC 3339 in UTC with whole seconds, e.g. `2026-03-29T01:00:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    match to_timestamp(t) {
        Some(ts) => ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => "(out of range)".to_owned(),
    }
}

fn to_timestamp(t: SystemTime) -> Option<Timestamp> {
    Timestamp::try_from(t).ok()
}

fn from_timestamp(t: Timestamp) -> Option<SystemTime> {
    Some(SystemTime::from(t))
}

/// Shell-style glob on a group name: `*` any run of characters, `?` any one character.
pub fn glob(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob("*", "web"));
        assert!(glob("web-*", "web-eu"));
        assert!(!glob("web-*", "web"));
        assert!(glob("w?b", "web"));
        assert!(glob("*-eu", "api-eu"));
        assert!(!glob("api", "api-eu"));
        assert!(glob("a*b*c", "aXbYbc"));
    }
}
