//! Phase 2 of a pass: classify every desired group (its findings, status and notes) and
//! collect what each group that may act wants before the budget is shared out.

use super::partition::Partition;
use super::{GroupReport, GroupStatus, PlanInput};
use crate::drift::{self, GroupContext, GroupDrift, Member, RemovalClass};
use crate::spec::ParsedGroup;
use crate::text::Text;

/// One shared text per provider for the reports (a handful: a linear search).
#[derive(Debug, Default)]
pub(super) struct ProviderTexts(Vec<Text>);

impl ProviderTexts {
    /// The shared text of `name`.
    pub fn get(&mut self, name: &str) -> Text {
        if let Some(text) = self.0.iter().find(|t| t.as_str() == name) {
            return text.clone();
        }
        let text = Text::from(name);
        self.0.push(text.clone());
        text
    }
}

/// What a group needs before the budget is shared out.
pub(super) struct Pending<'a> {
    /// Its report's position.
    pub index: usize,
    pub parsed: &'a ParsedGroup,
    pub drift: GroupDrift<'a>,
    pub complete: bool,
    /// Candidates for termination in pick order: replace set plus surplus picks.
    pub removals: Vec<Member<'a>>,
    /// Current members that stay (current minus surplus picks).
    pub keep: Vec<Member<'a>>,
    /// The group's target groups as observed, with `spec.traffic`.
    pub traffic: Option<super::traffic::GroupTraffic<'a>>,
}

/// The reports of the desired groups, in name order, and the groups that want steps.
pub(super) fn classify<'a>(
    input: &PlanInput<'a>,
    parts: &Partition<'a>,
    providers: &mut ProviderTexts,
) -> (Vec<GroupReport>, Vec<Pending<'a>>) {
    let mut reports: Vec<GroupReport> = Vec::with_capacity(parts.order.len());
    let mut pending: Vec<Pending<'a>> = Vec::new();
    let windows = crate::window::Windows::compile_or_closed(&input.config.windows);
    let lifted = crate::window::lasting_override(input.memory, input.now).map(|o| o.until);
    let mut windows = windows.at(input.now, lifted);
    for (position, parsed) in parts.order.iter().copied().enumerate() {
        let spec = &parsed.group.spec;
        let provider = spec.provider.as_str();
        let inventory_complete = parts.complete.get(provider).copied().unwrap_or(false);
        let ctx = GroupContext {
            name: parsed.group.name().as_str(),
            provider,
            hash: &parsed.hash,
            template: &spec.template,
            health: &spec.health,
            replicas: spec.replicas.get(),
            inventory_complete,
            now: input.now,
        };
        let mut drift = drift::classify_group(&ctx, parts.members[position].as_slice());
        let mut report = report_of(parsed, providers.get(provider), &mut drift, &ctx);
        let traffic = spec
            .traffic
            .as_deref()
            .map(|t| super::traffic::observe(input, &ctx, t, &drift, &mut report));
        if act(input, parsed, &mut report) {
            let (mut removals, keep) = removals(&drift, ctx.replicas as usize);
            let window = windows.state(ctx.name);
            crate::window::hold_replacements(&mut removals, &mut report.notes, window);
            pending.push(Pending {
                index: reports.len(),
                parsed,
                drift,
                complete: inventory_complete,
                removals,
                keep,
                traffic,
            });
        }
        reports.push(report);
    }
    (reports, pending)
}

/// A desired group's report before planning: findings and status.
fn report_of(
    parsed: &ParsedGroup,
    provider: Text,
    drift: &mut GroupDrift<'_>,
    ctx: &GroupContext<'_>,
) -> GroupReport {
    let findings = std::mem::take(&mut drift.findings);
    let mut report = GroupReport {
        name: parsed.group.name().clone(),
        provider,
        desired_hash: Some(parsed.hash),
        replicas: Some(ctx.replicas),
        status: if findings.is_empty() && !ctx.inventory_complete {
            GroupStatus::Unknown
        } else if findings.is_empty() {
            GroupStatus::InSync
        } else {
            GroupStatus::Drifted
        },
        observed_hashes: std::mem::take(&mut drift.observed_hashes),
        drift: findings,
        notes: Vec::new(),
        plan_id: None,
        strategy: None,
        approval: None,
        deferred: 0,
        steps: Vec::new(),
    };
    if !ctx.inventory_complete {
        report.notes.push(format!(
            "inventory of provider `{}` is incomplete: missing instances are not launched",
            ctx.provider
        ));
    }
    report
}

/// Whether the group may act on its drift: not suspended, not blocked by a failed
/// generation at this revision, its image allowed by `policy.images`, and drifted. Notes why not on the report.
fn act(input: &PlanInput<'_>, parsed: &ParsedGroup, report: &mut GroupReport) -> bool {
    let name = parsed.group.name().as_str();
    let failed = input
        .failed
        .iter()
        .find(|f| f.group == name && f.hash == parsed.hash && f.commit == input.revision);
    let image_blocked =
        crate::policy::plan_hook(input.images, report, &parsed.group.spec.template.image);
    if parsed.group.spec.suspend {
        report.status = GroupStatus::Suspended;
        report
            .notes
            .push("suspended: observed and reported, never acted on".into());
        false
    } else if let Some(f) = failed {
        report.status = GroupStatus::Blocked;
        report.notes.push(format!(
            "generation {} failed and rolled back at {}; not planned again until a new commit or an explicit retry",
            f.hash.short(),
            f.commit
        ));
        false
    } else if image_blocked {
        // policy.images: the image is not allowed (or could not be checked).
        false
    } else {
        !report.drift.is_empty()
    }
}

/// The group's termination candidates in pick order (the replace set, then surplus
/// picks) and the current members that stay.
fn removals<'a>(drift: &GroupDrift<'a>, replicas: usize) -> (Vec<Member<'a>>, Vec<Member<'a>>) {
    let mut current = drift.current.clone();
    let mut removals = drift.replace.clone();
    if current.len() > replicas {
        // The least preferred current instances go: not yet healthy first, then the
        // oldest.
        current.sort_unstable_by(|a, b| a.removal_key().cmp(&b.removal_key()));
        let keep = current.split_off(current.len() - replicas);
        removals.extend(current.into_iter().map(|m| Member {
            removal: Some(RemovalClass::Surplus),
            ..m
        }));
        current = keep;
    }
    (removals, current)
}
