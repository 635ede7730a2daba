//! The pull-request rendering of a [`PlanDocument`]: what `phoenix plan --format markdown`
//! prints, meant to be posted as a comment on the pull request whose checkout was planned
//! (design section 15, docs/planning.md "Previewing a pull request").
//!
//! A heading with the revision and the cycle's termination budget, a summary table with
//! one row per group that would change or has drift (status, drift, replacements,
//! launches, terminations, blast radius), then per group a collapsible `<details>` block
//! with hashes, every finding and the numbered steps. Text that comes from the fleet or
//! the spec (ids, reasons, observed values) is escaped, so a hostile tag value can neither
//! break the table nor inject HTML into the comment.

use std::fmt::Write as _;

use crate::drift::{DriftKind, Finding};
use crate::hash::SpecHash;
use crate::plan::{GroupReport, GroupStatus, PlanApproval, PlanDocument, Step};

/// The first line of every comment; CI jobs look for it to update their earlier comment
/// instead of adding a new one.
pub const MARKER: &str = "<!-- phoenix-plan -->";

/// Render a plan document as a GitHub/GitLab-flavoured markdown comment.
pub fn render_markdown(doc: &PlanDocument) -> String {
    let mut out = String::new();
    line(&mut out, MARKER);
    line(
        &mut out,
        &format!("### Phoenix plan for `{}`", code(&doc.revision)),
    );
    line(&mut out, "");
    let shown: Vec<&GroupReport> = doc.groups.iter().filter(|g| shows(g)).collect();
    let in_sync = doc.groups.len() - shown.len();
    let changing = shown.iter().filter(|g| !g.steps.is_empty()).count();
    line(&mut out, &headline(doc, changing, in_sync));
    line(&mut out, "");
    warnings(&mut out, doc);
    if !shown.is_empty() {
        summary_table(&mut out, &shown);
        for group in &shown {
            line(&mut out, "");
            details(&mut out, group);
        }
    }
    if !doc.unmanaged.is_empty() {
        line(&mut out, "");
        line(
            &mut out,
            &format!(
                "<details><summary>{} unmanaged instance(s), reported only, never touched</summary>",
                doc.unmanaged.len()
            ),
        );
        line(&mut out, "");
        for f in &doc.unmanaged {
            let id = f.instance_id.as_deref().unwrap_or("?");
            line(
                &mut out,
                &format!(
                    "- `{}` on {}: {}",
                    code(id),
                    escape(&f.provider),
                    escape(&f.reason)
                ),
            );
        }
        line(&mut out, "");
        line(&mut out, "</details>");
    }
    out
}

/// Whether a group gets a row: anything but a quiet in-sync group.
fn shows(g: &GroupReport) -> bool {
    g.status != GroupStatus::InSync || !g.drift.is_empty() || !g.steps.is_empty()
}

fn headline(doc: &PlanDocument, changing: usize, in_sync: usize) -> String {
    let changes = if doc.changes {
        format!("**{changing} group(s) would change.**")
    } else if doc.drifted {
        "**No changes planned, but there is drift.**".to_owned()
    } else {
        "**No changes.** The running fleet matches this desired state.".to_owned()
    };
    let deferred = if doc.budget.deferred > 0 {
        format!(", {} deferred to later cycles", doc.budget.deferred)
    } else {
        String::new()
    };
    format!(
        "{changes} Blast radius: {} of {} termination(s) allowed this cycle, fleet of {} instance(s){deferred}; {in_sync} group(s) in sync.",
        doc.budget.used, doc.budget.limit, doc.budget.fleet
    )
}

fn warnings(out: &mut String, doc: &PlanDocument) {
    let mut any = false;
    if let Some(hold) = &doc.hold {
        line(
            out,
            &format!(
                "> :warning: **Held for approval:** {} (removed: {}).",
                escape(&hold.reason),
                escape(&hold.removed_groups.join(", "))
            ),
        );
        any = true;
    }
    if !doc.incomplete_providers.is_empty() {
        line(
            out,
            &format!(
                "> :warning: **Incomplete inventory:** {} (nothing is declared missing or orphaned there).",
                escape(&doc.incomplete_providers.join(", "))
            ),
        );
        any = true;
    }
    if any {
        line(out, "");
    }
}

/// Counts of one group's plan, for its table row.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    launches: u32,
    terminations: u32,
    replacements: u32,
    observed: u32,
}

fn counts(g: &GroupReport) -> Counts {
    let mut c = Counts {
        observed: g.observed_hashes.iter().map(|h| h.count).sum(),
        ..Counts::default()
    };
    for step in &g.steps {
        match step {
            Step::Launch { count } => c.launches += count,
            Step::Terminate { instance_ids } => {
                c.terminations += u32::try_from(instance_ids.len()).unwrap_or(u32::MAX)
            }
            Step::WaitHealthy { .. }
            | Step::Bake { .. }
            | Step::Register { .. }
            | Step::WaitInService { .. }
            | Step::Deregister { .. }
            | Step::WaitDrained { .. } => {}
        }
    }
    c.replacements = u32::try_from(
        g.drift
            .iter()
            .filter(|f| {
                matches!(
                    f.kind,
                    DriftKind::Outdated | DriftKind::Modified | DriftKind::Unhealthy
                )
            })
            .filter_map(|f| f.instance_id.as_ref())
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
    )
    .unwrap_or(u32::MAX);
    c
}

fn summary_table(out: &mut String, groups: &[&GroupReport]) {
    line(
        out,
        "| group | status | drift | replacements | launches | terminations | blast radius |",
    );
    line(out, "|---|---|---|---:|---:|---:|---|");
    for g in groups {
        let c = counts(g);
        let terminations = if g.deferred > 0 {
            format!("{} (+{} deferred)", c.terminations, g.deferred)
        } else {
            c.terminations.to_string()
        };
        line(
            out,
            &format!(
                "| `{}` | {} | {} | {} | {} | {terminations} | {} |",
                g.name.as_str(),
                status_label(g),
                drift_summary(&g.drift),
                c.replacements,
                c.launches,
                blast_radius(c)
            ),
        );
    }
}

/// Terminations as a share of the group's observed instances.
fn blast_radius(c: Counts) -> String {
    if c.terminations == 0 {
        return "none".to_owned();
    }
    if c.observed == 0 {
        return format!("{} instance(s)", c.terminations);
    }
    let percent = (u64::from(c.terminations) * 100).div_ceil(u64::from(c.observed));
    format!("{} of {} ({percent}%)", c.terminations, c.observed)
}

/// `outdated ×3, missing ×1`, kinds in the order of first appearance.
fn drift_summary(drift: &[Finding]) -> String {
    let mut kinds: Vec<(DriftKind, u32)> = Vec::new();
    for f in drift {
        let n = f.count.unwrap_or(1);
        match kinds.iter_mut().find(|(k, _)| *k == f.kind) {
            Some((_, total)) => *total += n,
            None => kinds.push((f.kind, n)),
        }
    }
    if kinds.is_empty() {
        return "none".to_owned();
    }
    kinds
        .iter()
        .map(|(k, n)| format!("{} ×{n}", k.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn status_label(g: &GroupReport) -> &'static str {
    match g.status {
        GroupStatus::InSync => "in sync",
        GroupStatus::Planned => "planned",
        GroupStatus::AwaitingApproval => match g.approval {
            Some(PlanApproval::Held) => "held for approval",
            _ => "awaiting approval",
        },
        GroupStatus::Drifted => "drifted, not planned",
        GroupStatus::Unknown => "unknown (inventory incomplete)",
        GroupStatus::Suspended => "suspended",
        GroupStatus::Blocked => "blocked (failed generation)",
    }
}

fn details(out: &mut String, g: &GroupReport) {
    let strategy = g
        .strategy
        .map(|s| match s {
            crate::spec::Strategy::Rolling => ", rolling",
            crate::spec::Strategy::BlueGreen => ", blue-green",
            crate::spec::Strategy::Canary => ", canary",
        })
        .unwrap_or("");
    line(
        out,
        &format!(
            "<details><summary><code>{}</code>: {}{strategy}</summary>",
            g.name.as_str(),
            status_label(g)
        ),
    );
    line(out, "");
    match (&g.desired_hash, g.replicas) {
        (Some(h), Some(r)) => line(
            out,
            &format!(
                "- desired: `{}`, {r} replica(s), provider {}",
                h.short(),
                escape(&g.provider)
            ),
        ),
        _ => line(
            out,
            &format!(
                "- desired: not in the desired state (orphaned on {})",
                escape(&g.provider)
            ),
        ),
    }
    if g.observed_hashes.is_empty() {
        line(out, "- observed: no instances");
    } else {
        let observed: Vec<String> = g
            .observed_hashes
            .iter()
            .map(|c| format!("`{}` ×{}", code(&short_tag(&c.hash)), c.count))
            .collect();
        line(out, &format!("- observed: {}", observed.join(", ")));
    }
    if let Some(id) = &g.plan_id {
        line(out, &format!("- plan: `{}`", code(id)));
    }
    for note in &g.notes {
        line(out, &format!("- note: {}", escape(note)));
    }
    if !g.drift.is_empty() {
        line(out, "");
        line(
            out,
            "| drift | instance | field | expected | observed | why |",
        );
        line(out, "|---|---|---|---|---|---|");
        for f in &g.drift {
            finding_row(out, f);
        }
    }
    if !g.steps.is_empty() {
        line(out, "");
        for (i, step) in g.steps.iter().enumerate() {
            line(out, &format!("{}. {}", i + 1, step_text(step)));
        }
    }
    line(out, "");
    line(out, "</details>");
}

fn finding_row(out: &mut String, f: &Finding) {
    let subject = match (&f.instance_id, f.count) {
        (Some(id), _) => format!("`{}`", code(id)),
        (None, Some(n)) => format!("{n} instance(s)"),
        (None, None) => String::new(),
    };
    let opt = |v: &Option<String>| {
        v.as_deref()
            .map(|v| escape(&short_tag(v)))
            .unwrap_or_default()
    };
    line(
        out,
        &format!(
            "| {} | {subject} | {} | {} | {} | {} |",
            f.kind.as_str(),
            f.field.map(|x| x.as_str()).unwrap_or(""),
            opt(&f.expected),
            opt(&f.observed),
            escape(&f.reason)
        ),
    );
}

fn step_text(step: &Step) -> String {
    let fmt = crate::duration::format;
    match step {
        Step::Launch { count } => format!("launch {count}"),
        Step::WaitHealthy {
            instance_ids,
            grace,
            deadline,
        } => {
            let also = if instance_ids.is_empty() {
                String::new()
            } else {
                format!(" and {}", ids(instance_ids))
            };
            format!(
                "wait until healthy: new instances{also} (grace {}, deadline {})",
                fmt(*grace),
                fmt(*deadline)
            )
        }
        Step::Bake { duration } => format!("bake {}", fmt(*duration)),
        Step::Terminate { instance_ids } => format!("terminate {}", ids(instance_ids)),
        traffic => crate::render::traffic_step(traffic, ids).unwrap_or_default(),
    }
}

fn ids(ids: &[String]) -> String {
    let mut s = String::new();
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "`{}`", code(id));
    }
    s
}

fn short_tag(tag: &str) -> String {
    tag.parse::<SpecHash>()
        .map(|h| h.short())
        .unwrap_or_else(|_| tag.to_owned())
}

fn line(out: &mut String, s: &str) {
    out.push_str(s);
    out.push('\n');
}

/// Text for a table cell or a list item: no line breaks, no table pipes, no HTML and no
/// markdown emphasis or links.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '|' => out.push_str("&#124;"),
            '\n' | '\r' | '\t' => out.push(' '),
            '\\' | '`' | '*' | '_' | '[' | ']' | '#' | '~' | '!' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Text inside a backtick code span: backticks and line breaks cannot occur, and a pipe
/// would end a table cell even there.
fn code(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '`' | '|' => '\'',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_tables_html_and_markup() {
        assert_eq!(
            escape("a|b <script>*x*\nnext"),
            "a&#124;b &lt;script&gt;\\*x\\* next"
        );
        assert_eq!(code("i-`1|2"), "i-'1'2");
    }

    #[test]
    fn blast_radius_is_a_share_of_the_observed_instances() {
        let c = |terminations, observed| Counts {
            terminations,
            observed,
            ..Counts::default()
        };
        assert_eq!(blast_radius(c(0, 3)), "none");
        assert_eq!(blast_radius(c(2, 3)), "2 of 3 (67%)");
        assert_eq!(blast_radius(c(3, 3)), "3 of 3 (100%)");
        assert_eq!(blast_radius(c(1, 0)), "1 instance(s)");
    }
}
