//! The human-readable rendering of a [`PlanDocument`]: what `phoenix plan` prints
//! without `--json`.
//!
//! Plain text, one block per group that has drift or steps: desired and observed
//! hashes, each finding with its reason, numbered steps. Colour is the caller's
//! decision (only on a terminal); when asked for, ANSI escapes are added around
//! markers and kinds, never inside values, so the text reads the same either way.

use std::fmt::Write as _;

use crate::drift::{DriftKind, Finding};
use crate::hash::SpecHash;
use crate::plan::{GroupReport, GroupStatus, PlanApproval, PlanDocument, Step};

/// How to render.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// Add ANSI colour escapes (the caller decides, e.g. only on a terminal).
    pub colour: bool,
    /// Also list groups that are in sync.
    pub show_in_sync: bool,
}

#[derive(Clone, Copy)]
enum Paint {
    Add,
    Remove,
    Change,
    Warn,
    Dim,
    Bold,
}

impl Paint {
    fn code(self) -> &'static str {
        match self {
            Paint::Add => "32",
            Paint::Remove => "31",
            Paint::Change => "33",
            Paint::Warn => "35",
            Paint::Dim => "2",
            Paint::Bold => "1",
        }
    }
}

struct Out {
    text: String,
    colour: bool,
}

impl Out {
    fn paint(&self, paint: Paint, s: &str) -> String {
        if self.colour {
            format!("\x1b[{}m{s}\x1b[0m", paint.code())
        } else {
            s.to_owned()
        }
    }

    fn line(&mut self, s: &str) {
        self.text.push_str(s);
        self.text.push('\n');
    }
}

/// Render a plan document as text.
pub fn render_text(doc: &PlanDocument, options: RenderOptions) -> String {
    let mut out = Out {
        text: String::new(),
        colour: options.colour,
    };
    let count = |status: GroupStatus| doc.groups.iter().filter(|g| g.status == status).count();
    let planned = count(GroupStatus::Planned);
    let awaiting = count(GroupStatus::AwaitingApproval);
    let in_sync = count(GroupStatus::InSync);
    let other = doc.groups.len() - planned - awaiting - in_sync;
    let summary = format!(
        "Plan for revision {}: {} group(s) to change, {} awaiting approval, {} not planned, {} in sync.",
        doc.revision, planned, awaiting, other, in_sync
    );
    let summary = out.paint(Paint::Bold, &summary);
    out.line(&summary);
    let budget = format!(
        "Budget: {} of {} terminations this cycle (fleet {}){}.",
        doc.budget.used,
        doc.budget.limit,
        doc.budget.fleet,
        if doc.budget.deferred > 0 {
            format!(", {} deferred", doc.budget.deferred)
        } else {
            String::new()
        }
    );
    out.line(&budget);
    if let Some(hold) = &doc.hold {
        let s = out.paint(
            Paint::Warn,
            &format!(
                "! Held for approval: {} (removed: {}).",
                hold.reason,
                hold.removed_groups.join(", ")
            ),
        );
        out.line(&s);
    }
    if !doc.incomplete_providers.is_empty() {
        let s = out.paint(
            Paint::Warn,
            &format!(
                "! Incomplete inventory: {} (nothing is declared missing or orphaned there).",
                doc.incomplete_providers.join(", ")
            ),
        );
        out.line(&s);
    }
    if !doc.changes && !doc.drifted {
        if doc.incomplete_providers.is_empty() {
            out.line("No changes. The running fleet matches the desired state.");
        } else {
            out.line("No changes planned, but not every inventory was complete.");
        }
    }

    for group in &doc.groups {
        if group.status == GroupStatus::InSync && !options.show_in_sync {
            continue;
        }
        out.line("");
        render_group(&mut out, group);
    }

    if !doc.unmanaged.is_empty() {
        out.line("");
        out.line("Unmanaged instances (report only, never touched):");
        for f in &doc.unmanaged {
            let id = f.instance_id.as_deref().unwrap_or("?");
            out.line(&format!("  {id} on {}: {}", f.provider, f.reason));
        }
    }
    out.text
}

fn render_group(out: &mut Out, g: &GroupReport) {
    let (marker, paint) = match g.status {
        GroupStatus::InSync => ("=", Paint::Dim),
        GroupStatus::Planned => ("~", Paint::Change),
        GroupStatus::AwaitingApproval => ("?", Paint::Warn),
        GroupStatus::Drifted | GroupStatus::Unknown => ("!", Paint::Warn),
        GroupStatus::Suspended | GroupStatus::Blocked => ("-", Paint::Dim),
    };
    let status = status_label(g.status);
    let head = format!(
        "{} {} ({}) {}",
        out.paint(paint, marker),
        out.paint(Paint::Bold, g.name.as_str()),
        g.provider,
        status
    );
    out.line(&head);
    match (&g.desired_hash, g.replicas) {
        (Some(h), Some(r)) => out.line(&format!("    desired   {}  replicas {r}", h.short())),
        _ => out.line("    desired   (not in the desired state)"),
    }
    if g.observed_hashes.is_empty() {
        out.line("    observed  (no instances)");
    } else {
        let observed: Vec<String> = g
            .observed_hashes
            .iter()
            .map(|c| format!("{} x{}", short_tag(&c.hash), c.count))
            .collect();
        out.line(&format!("    observed  {}", observed.join(", ")));
    }
    if !g.drift.is_empty() {
        out.line("    drift");
        for f in &g.drift {
            let line = render_finding(out, f);
            out.line(&line);
        }
    }
    if !g.steps.is_empty() {
        let approval = match g.approval {
            Some(PlanApproval::Manual) => ", awaiting manual approval",
            Some(PlanApproval::Held) => ", held for approval",
            _ => "",
        };
        let strategy = g
            .strategy
            .map(|s| match s {
                crate::spec::Strategy::Rolling => "rolling",
                crate::spec::Strategy::BlueGreen => "blue-green",
                crate::spec::Strategy::Canary => "canary",
            })
            .unwrap_or("prune");
        out.line(&format!(
            "    plan {} ({strategy}{approval})",
            g.plan_id.as_deref().unwrap_or("-")
        ));
        for (i, step) in g.steps.iter().enumerate() {
            let line = render_step(out, i + 1, step);
            out.line(&line);
        }
    }
    for note in &g.notes {
        out.line(&format!("    note: {note}"));
    }
}

fn render_finding(out: &Out, f: &Finding) -> String {
    let paint = match f.kind {
        DriftKind::Missing => Paint::Add,
        DriftKind::Surplus | DriftKind::Orphaned => Paint::Remove,
        DriftKind::Unmanaged => Paint::Dim,
        DriftKind::PolicyViolation => Paint::Warn,
        DriftKind::Outdated
        | DriftKind::Modified
        | DriftKind::Unhealthy
        | DriftKind::Unregistered => Paint::Change,
    };
    let kind = out.paint(paint, &format!("{:<10}", f.kind.as_str()));
    let subject = match (&f.instance_id, f.count) {
        (Some(id), _) => id.clone(),
        (None, Some(n)) => format!("{n} instance(s)"),
        (None, None) => String::new(),
    };
    format!("      {kind} {subject}: {}", f.reason)
}

fn render_step(out: &Out, n: usize, step: &Step) -> String {
    let fmt = crate::duration::format;
    let body = match step {
        Step::Launch { count } => out.paint(Paint::Add, &format!("launch {count}")),
        Step::WaitHealthy {
            instance_ids,
            grace,
            deadline,
        } => {
            let also = if instance_ids.is_empty() {
                String::new()
            } else {
                format!(" and {}", instance_ids.join(", "))
            };
            format!(
                "wait until healthy: new instances{also} (grace {}, deadline {})",
                fmt(*grace),
                fmt(*deadline)
            )
        }
        Step::Bake { duration } => format!("bake {}", fmt(*duration)),
        Step::Terminate { instance_ids } => out.paint(
            Paint::Remove,
            &format!("terminate {}", instance_ids.join(", ")),
        ),
        traffic => traffic_step(traffic, |ids| ids.join(", ")).unwrap_or_default(),
    };
    let mut s = String::new();
    let _ = write!(s, "      {n}. {body}");
    s
}

fn status_label(status: GroupStatus) -> &'static str {
    match status {
        GroupStatus::InSync => "in sync",
        GroupStatus::Planned => "planned",
        GroupStatus::AwaitingApproval => "awaiting approval",
        GroupStatus::Drifted => "drifted",
        GroupStatus::Unknown => "unknown (inventory incomplete)",
        GroupStatus::Suspended => "suspended",
        GroupStatus::Blocked => "blocked",
    }
}

fn short_tag(tag: &str) -> String {
    tag.parse::<SpecHash>()
        .map(|h| h.short())
        .unwrap_or_else(|_| tag.to_owned())
}

/// The text of a traffic step (`register`, `wait_in_service`, `deregister`,
/// `wait_drained`), instance ids written by `ids`; `None` for any other step. Shared by
/// the text and Markdown renderings.
pub(crate) fn traffic_step(step: &Step, ids: impl Fn(&[String]) -> String) -> Option<String> {
    let fmt = crate::duration::format;
    let new_and = |listed: &[String]| {
        if listed.is_empty() {
            "new instances".to_string()
        } else {
            ids(listed)
        }
    };
    Some(match step {
        Step::Register {
            instance_ids,
            target_groups,
        } => format!(
            "register {} in {}",
            new_and(instance_ids),
            target_groups.join(", ")
        ),
        Step::WaitInService {
            instance_ids,
            target_groups,
            deadline,
        } => format!(
            "wait until in service: {} in {} (deadline {})",
            new_and(instance_ids),
            target_groups.join(", "),
            fmt(*deadline)
        ),
        Step::Deregister {
            instance_ids,
            target_groups,
        } => format!(
            "deregister {} from {}",
            ids(instance_ids),
            target_groups.join(", ")
        ),
        Step::WaitDrained {
            instance_ids,
            target_groups,
            drain,
        } => format!(
            "wait until drained: {} from {} ({})",
            ids(instance_ids),
            target_groups.join(", "),
            drain.map_or_else(
                || "the target group's deregistration delay + 30s".to_string(),
                |d| format!("at most {}", fmt(d))
            )
        ),
        _ => return None,
    })
}
