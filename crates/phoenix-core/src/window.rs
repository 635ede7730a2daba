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

use std::collections::HashMap;
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
        Some(until) => format!(
            "{what} held by a change window until {}",
            crate::time::rfc3339(until)
        ),
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
    /// window before it. For many groups at one instant, [`Windows::at`] evaluates each
    /// distinct set of matching windows once.
    pub fn state(
        &self,
        group: &str,
        now: SystemTime,
        override_until: Option<SystemTime>,
    ) -> WindowState {
        let mut set = MatchSet::default();
        self.matching(group, &mut set);
        self.state_of(&set, now, override_until)
    }

    /// The windows evaluated at `now` (with the override lifting them before
    /// `override_until`), for asking about many groups.
    pub fn at(&self, now: SystemTime, override_until: Option<SystemTime>) -> WindowsAt<'_> {
        WindowsAt {
            windows: self,
            now,
            override_until: override_until.filter(|o| *o > now),
            set: MatchSet::default(),
            cache: HashMap::new(),
        }
    }

    /// The next instant after `now` at which any window opens or closes.
    pub fn next_change(&self, now: SystemTime) -> Option<SystemTime> {
        self.next_boundary(None, now)
            .filter(|n| *n <= now + HORIZON)
    }

    /// The windows matching `group`, as a bit per window, into `set` (cleared first).
    fn matching(&self, group: &str, set: &mut MatchSet) {
        set.0.clear();
        set.0.resize(self.windows.len().div_ceil(64), 0);
        for (i, w) in self.windows.iter().enumerate() {
            if w.matches(group) {
                set.0[i / 64] |= 1 << (i % 64);
            }
        }
    }

    /// [`Windows::state`] of a group matched by exactly the windows in `set`.
    fn state_of(
        &self,
        set: &MatchSet,
        now: SystemTime,
        override_until: Option<SystemTime>,
    ) -> WindowState {
        let lifted = |t: SystemTime| override_until.is_some_and(|o| t < o);
        let blocked_at = |t: SystemTime| !lifted(t) && self.blocked_at(set, t);
        if !blocked_at(now) {
            return WindowState::default();
        }
        let mut t = now;
        for _ in 0..MAX_STEPS {
            let mut next = self.next_boundary(Some(set), t);
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

    fn blocked_at(&self, set: &MatchSet, t: SystemTime) -> bool {
        if self.closed {
            return true;
        }
        let mut allow_exists = false;
        let mut allow_open = false;
        for w in self.in_set(Some(set)) {
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

    /// The windows in `set` (all windows for `None`).
    fn in_set<'s>(&'s self, set: Option<&'s MatchSet>) -> impl Iterator<Item = &'s Window> + 's {
        self.windows
            .iter()
            .enumerate()
            .filter(move |(i, _)| set.is_none_or(|s| s.contains(*i)))
            .map(|(_, w)| w)
    }

    /// The earliest start or end after `t` of the windows in `set` (all windows for
    /// `None`).
    fn next_boundary(&self, set: Option<&MatchSet>, t: SystemTime) -> Option<SystemTime> {
        self.in_set(set)
            .flat_map(|w| [w.open_at(t), w.next_start(t)])
            .flatten()
            .filter(|b| *b > t)
            .min()
    }
}

/// Which windows match a group: bit `i` is set when window `i` does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
struct MatchSet(Vec<u64>);

impl MatchSet {
    fn contains(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

/// The windows at one instant ([`Windows::at`]): a group's state is computed once per
/// distinct set of windows matching it, so asking about 100,000 groups costs the glob
/// matches plus one evaluation per distinct set (usually a handful), not one schedule
/// walk per group.
#[derive(Debug)]
pub struct WindowsAt<'w> {
    windows: &'w Windows,
    now: SystemTime,
    override_until: Option<SystemTime>,
    /// Scratch set, reused from group to group.
    set: MatchSet,
    cache: HashMap<MatchSet, WindowState>,
}

impl WindowsAt<'_> {
    /// Whether `group` is blocked now, and until when.
    pub fn state(&mut self, group: &str) -> WindowState {
        if self.windows.is_empty() {
            return WindowState::default();
        }
        self.windows.matching(group, &mut self.set);
        if let Some(state) = self.cache.get(&self.set) {
            return *state;
        }
        let state = self
            .windows
            .state_of(&self.set, self.now, self.override_until);
        self.cache.insert(self.set.clone(), state);
        state
    }

    /// The next instant after now at which a window opens or closes, or the override in
    /// force ends, whichever comes first (within a year).
    pub fn next_change(&self) -> Option<SystemTime> {
        let windows = self.windows.next_change(self.now);
        match (windows, self.override_until) {
            (Some(w), Some(o)) => Some(w.min(o)),
            (w, o) => w.or(o),
        }
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

fn to_timestamp(t: SystemTime) -> Option<Timestamp> {
    Timestamp::try_from(t).ok()
}

fn from_timestamp(t: Timestamp) -> Option<SystemTime> {
    Some(SystemTime::from(t))
}

/// Shell-style glob on a group name: `*` any run of characters, `?` any one character.
/// Allocates nothing for ASCII text (group names are ASCII).
pub fn glob(pattern: &str, name: &str) -> bool {
    if pattern.is_ascii() && name.is_ascii() {
        glob_units(pattern.as_bytes(), name.as_bytes(), b'*', b'?')
    } else {
        let p: Vec<char> = pattern.chars().collect();
        let n: Vec<char> = name.chars().collect();
        glob_units(&p, &n, '*', '?')
    }
}

fn glob_units<T: PartialEq + Copy>(p: &[T], n: &[T], many: T, one: T) -> bool {
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == one || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == many {
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
    p[pi..].iter().all(|c| *c == many)
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
        assert!(glob("wéb-?", "wéb-1"));
        assert!(glob("w?b", "wéb"));
        assert!(!glob("w?b", "wééb"));
    }
}
