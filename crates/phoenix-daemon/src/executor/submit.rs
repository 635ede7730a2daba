//! `submit`: the planned groups of a planning pass become store plans, one active plan
//! per group. A rollout with a new target supersedes the group's plan (at once, or once
//! its in-flight step finished), a prune waits for the group's active plan, a held plan
//! gives way to the group's plan proposed without a hold, and a plan id is never run
//! twice. The desired groups are remembered for the prune checks of `advance`.

use std::collections::HashMap;
use std::time::SystemTime;

use phoenix_core::plan::{GroupReport, GroupStatus, PlanApproval, PlanDocument, Step};
use phoenix_core::spec::ParsedGroup;
use phoenix_core::{GroupName, InstanceGroup, SpecHash, Text};
use phoenix_store::{
    GenerationOutcome, NewPlan, NewStep, PlanId, PlanKind, PlanStatus, PlanWithSteps, StepAction,
    StepStatus, Store,
};

use super::Executor;
use super::context::set_outcome;
use super::doc::{DocHeader, PRUNE_KIND, PlanDoc, PruneDoc, StepDetail};
use super::error::{ExecutorError, store_err};
use super::transition::{PlanRef, Transition};

/// The desired state as of the last [`super::Executor::submit`].
///
/// Kept between passes for every desired group (100,000 at the largest fleets), so a
/// group is its shared name and its provider one shared text per provider, in one
/// exactly sized list sorted by name (names are unique in a revision).
#[derive(Debug)]
pub(super) struct Desired {
    /// The revision.
    pub revision: String,
    /// `(group, provider)` of every desired group, sorted by group.
    groups: Box<[(GroupName, Text)]>,
}

impl Desired {
    pub fn new(revision: String, groups: &[ParsedGroup]) -> Self {
        let mut providers: Vec<Text> = Vec::new();
        let mut list: Vec<(GroupName, Text)> = Vec::with_capacity(groups.len());
        for g in groups {
            let name = g.group.spec.provider.as_str();
            let provider = match providers.iter().find(|p| p.as_str() == name) {
                Some(p) => p.clone(),
                None => {
                    let p = Text::from(name);
                    providers.push(p.clone());
                    p
                }
            };
            list.push((g.group.name().clone(), provider));
        }
        list.sort_unstable();
        Self {
            revision,
            groups: list.into_boxed_slice(),
        }
    }

    pub fn contains(&self, group: &str, provider: &str) -> bool {
        self.groups
            .binary_search_by(|(g, p)| (g.as_str(), p.as_str()).cmp(&(group, provider)))
            .is_ok()
    }
}

/// What `submit` makes of one planned group.
enum Proposal {
    /// Converge a desired group to `target`.
    Rollout { target: SpecHash, doc: Box<PlanDoc> },
    /// Terminate orphans of a group gone from the desired state.
    Prune(PruneDoc),
}

/// A planned group `submit` will try to turn into a store plan.
struct Proposed<'r> {
    /// The planner's report of the group.
    report: &'r GroupReport,
    /// The planner's plan id.
    plan_id: &'r str,
    /// Auto, manual or held.
    approval: PlanApproval,
    /// The hold reason, when the revision is held.
    hold: Option<String>,
    /// The plan.
    proposal: Proposal,
}

/// What `submit` is working from: the planner's document and the pass's inputs.
struct Submission<'a> {
    doc: &'a PlanDocument,
    by_name: HashMap<&'a str, &'a ParsedGroup>,
    commit: &'a str,
    now: SystemTime,
}

impl Executor {
    /// After a planning pass in enforce mode: turn the document's planned groups into
    /// store plans.
    ///
    /// - A group whose active plan has the same target hash: nothing (the planner keeps
    ///   proposing plans while one runs; they are ignored).
    /// - A different target hash: a plan waiting for approval, or running with no step in
    ///   flight, is superseded at once by the new plan; a running plan with a step in
    ///   flight is superseded by [`Executor::advance`] once that step finishes, and the
    ///   group is planned again on the next pass.
    /// - `approval: manual` plans and every plan of a held revision (`approval: held`,
    ///   a mass removal) are inserted awaiting approval. A held plan still waiting when a
    ///   later pass proposes the group's plan without a hold gives way to it (or, the
    ///   same plan, is released).
    /// - Orphan prunes (no desired hash) become prune plans: terminate exactly the named
    ///   instances. A prune never supersedes another plan of its group; it waits until
    ///   the group has no active plan.
    /// - Groups not `planned` or `awaiting_approval` are skipped. A plan id already in
    ///   the store (for example a plan an operator cancelled, proposed again unchanged)
    ///   is not run again.
    ///
    /// The desired groups are remembered: [`Executor::advance`] stops a prune plan whose
    /// group is desired again (on its provider) instead of terminating.
    pub fn submit(
        &mut self,
        store: &mut Store,
        doc: &PlanDocument,
        groups: &[ParsedGroup],
        commit: &str,
        now: SystemTime,
    ) -> Result<Vec<Transition>, ExecutorError> {
        let mut out = Vec::new();
        let sub = Submission {
            doc,
            by_name: groups
                .iter()
                .map(|g| (g.group.name().as_str(), g))
                .collect(),
            commit,
            now,
        };
        // The previous list goes before the new one is built: one copy at a time.
        self.desired = None;
        self.desired = Some(Desired::new(doc.revision.clone(), groups));
        for report in &doc.groups {
            if let Some(proposed) = self.propose(&sub, report) {
                self.place(store, &sub, proposed, &mut out)?;
            }
        }
        Ok(out)
    }

    /// The plan a planned group asks for, or `None` when it is skipped.
    fn propose<'r>(&self, sub: &Submission<'_>, report: &'r GroupReport) -> Option<Proposed<'r>> {
        if report.steps.is_empty()
            || !matches!(
                report.status,
                GroupStatus::Planned | GroupStatus::AwaitingApproval
            )
        {
            return None;
        }
        let (Some(plan_id), Some(approval)) = (&report.plan_id, report.approval) else {
            return None;
        };
        if !self.providers.contains_key(report.provider.as_str()) {
            tracing::warn!(group = %report.name, provider = %report.provider,
                "planned group names a provider that is not configured; skipped");
            return None;
        }
        let doc = sub.doc;
        let hold = (approval == PlanApproval::Held).then(|| {
            doc.hold.as_ref().map_or_else(
                || "the revision is held for approval".to_string(),
                |h| h.reason.clone(),
            )
        });
        let proposal = match report.desired_hash {
            Some(target) => {
                let Some(parsed) = sub.by_name.get(report.name.as_str()).copied() else {
                    tracing::warn!(group = %report.name, "planned group has no desired spec; skipped");
                    return None;
                };
                Proposal::Rollout {
                    target,
                    doc: Box::new(PlanDoc {
                        format: 1,
                        provider: report.provider.to_string(),
                        revision: doc.revision.clone(),
                        commit: sub.commit.to_string(),
                        group: InstanceGroup::clone(&parsed.group),
                        hold: hold.clone(),
                    }),
                }
            }
            None => Proposal::Prune(prune_doc(sub, report, hold.clone())?),
        };
        Some(Proposed {
            report,
            plan_id: plan_id.as_str(),
            approval,
            hold,
            proposal,
        })
    }

    /// Insert a proposed plan, superseding or waiting for the group's active plan.
    fn place(
        &mut self,
        store: &mut Store,
        sub: &Submission<'_>,
        proposed: Proposed<'_>,
        out: &mut Vec<Transition>,
    ) -> Result<(), ExecutorError> {
        let group = match &proposed.proposal {
            Proposal::Rollout { doc, .. } => doc.group.name().clone(),
            Proposal::Prune(_) => proposed.report.name.clone(),
        };
        let active = store.active_plan(&group).map_err(store_err(
            "find active plan",
            &PlanId::new(proposed.plan_id),
        ))?;
        // A plan from a held revision still waiting, and a *newer* revision proposes
        // the group without a hold (the groups came back): the held plan gives way.
        // At the same revision it keeps waiting even if the hold no longer shows (an
        // operator approved part of the mass removal, which lowers the fraction): one
        // approval is for exactly one plan.
        let held_lifted = active.as_ref().is_some_and(|old| {
            let header = DocHeader::of(&old.plan);
            old.plan.status == PlanStatus::AwaitingApproval
                && header.hold.is_some()
                && proposed.hold.is_none()
                && header.revision.as_deref() != Some(sub.doc.revision.as_str())
        });
        let Some(id) = fresh_plan_id(store, proposed.plan_id)? else {
            return Ok(());
        };
        let new = new_plan(sub, &proposed, id.clone(), group)?;
        match active {
            None => {
                store
                    .insert_plan(&new, sub.now)
                    .map_err(store_err("insert plan", &id))?;
            }
            // A held plan gives way to the group's plan proposed without a hold.
            Some(old) if held_lifted => {
                self.supersede_now(store, &old, &new, sub.now, out)?;
            }
            // A prune waits for the group's active plan (a rollout, or another prune
            // of the same group still running or waiting): it is proposed again.
            Some(_) if matches!(new.kind, PlanKind::Prune) => return Ok(()),
            Some(old) if old.plan.kind.target_hash() == new.kind.target_hash() => return Ok(()),
            Some(old) => {
                let in_flight = old.steps.iter().any(|s| s.status == StepStatus::Intent);
                if old.plan.status == PlanStatus::Running && in_flight {
                    self.runtime
                        .entry(old.plan.id.clone())
                        .or_default()
                        .supersede = new.kind.target_hash();
                    return Ok(());
                }
                self.supersede_now(store, &old, &new, sub.now, out)?;
            }
        }
        out.push(announce(sub, &proposed, &new));
        Ok(())
    }

    /// Replace `old` (waiting for approval, or running with no step in flight) by `new`
    /// in one store transaction.
    fn supersede_now(
        &mut self,
        store: &mut Store,
        old: &PlanWithSteps,
        new: &NewPlan,
        now: SystemTime,
        out: &mut Vec<Transition>,
    ) -> Result<(), ExecutorError> {
        store
            .supersede_plan(&old.plan.id, new, now)
            .map_err(store_err("supersede plan", &old.plan.id))?;
        self.runtime.remove(&old.plan.id);
        if let PlanKind::Rollout { target_hash, .. } = &old.plan.kind {
            set_outcome(
                store,
                &old.plan.group,
                target_hash,
                GenerationOutcome::Superseded,
            )?;
        }
        let towards = match &new.kind {
            PlanKind::Rollout { target_hash, .. } => format!("for {target_hash}"),
            PlanKind::Prune => "(prune)".to_string(),
        };
        out.push(Transition::Superseded {
            plan: PlanRef::of(&old.plan),
            by: Some(new.id.clone()),
            message: format!(
                "superseded by plan {} {towards} (commit {})",
                new.id, new.commit
            ),
        });
        Ok(())
    }
}

/// The document of an orphan prune: terminate exactly the instances its steps name.
/// `None` (skipped) when the planner asked for anything but terminations.
fn prune_doc(sub: &Submission<'_>, report: &GroupReport, hold: Option<String>) -> Option<PruneDoc> {
    if report
        .steps
        .iter()
        .any(|s| !matches!(s, Step::Terminate { .. }))
    {
        tracing::warn!(group = %report.name, "orphan prune with steps other than terminate; skipped");
        return None;
    }
    let instance_ids: Vec<String> = report
        .steps
        .iter()
        .flat_map(|s| match s {
            Step::Terminate { instance_ids } => instance_ids.clone(),
            _ => Vec::new(),
        })
        .collect();
    Some(PruneDoc {
        format: 1,
        kind: PRUNE_KIND.to_string(),
        provider: report.provider.to_string(),
        revision: sub.doc.revision.clone(),
        commit: sub.commit.to_string(),
        group: report.name.to_string(),
        instance_ids,
        hold,
    })
}

/// The store plan of a proposal, under the id it is inserted as.
fn new_plan(
    sub: &Submission<'_>,
    proposed: &Proposed<'_>,
    id: PlanId,
    group: GroupName,
) -> Result<NewPlan, ExecutorError> {
    let (kind, doc) = match &proposed.proposal {
        Proposal::Rollout { target, doc } => (
            PlanKind::Rollout {
                target_hash: *target,
                strategy: doc.group.spec.rollout.strategy,
            },
            serde_json::to_value(doc),
        ),
        Proposal::Prune(doc) => (PlanKind::Prune, serde_json::to_value(doc)),
    };
    let status = if proposed.approval == PlanApproval::Auto {
        PlanStatus::Running
    } else {
        PlanStatus::AwaitingApproval
    };
    Ok(NewPlan {
        doc: doc.map_err(|source| ExecutorError::BadDocument {
            plan: id.clone(),
            source,
        })?,
        id,
        group,
        kind,
        commit: sub.commit.to_string(),
        status,
        steps: proposed
            .report
            .steps
            .iter()
            .map(|step| NewStep {
                action: StepAction::of(step),
                detail: serde_json::to_value(StepDetail::of(step.clone()))
                    .expect("a step detail always serializes"),
            })
            .collect(),
    })
}

/// The transition announcing an inserted plan: waiting for approval, or started.
fn announce(sub: &Submission<'_>, proposed: &Proposed<'_>, new: &NewPlan) -> Transition {
    let plan = PlanRef {
        plan: new.id.clone(),
        group: new.group.clone(),
        target_hash: new.kind.target_hash(),
        commit: sub.commit.to_string(),
    };
    let (steps, id, commit) = (new.steps.len(), &new.id, sub.commit);
    if let Some(reason) = &proposed.hold {
        Transition::AwaitingApproval {
            plan,
            message: format!(
                "held for approval as a mass removal ({reason}); {steps} steps wait for POST /api/v1/plans/{id}/approve"
            ),
        }
    } else if new.status == PlanStatus::AwaitingApproval {
        Transition::AwaitingApproval {
            plan,
            message: format!("{steps} steps wait for approval (approval: manual)"),
        }
    } else {
        Transition::PlanStarted {
            plan,
            message: match &proposed.proposal {
                Proposal::Rollout { target, .. } => {
                    format!("{steps} steps towards {target} (commit {commit})")
                }
                Proposal::Prune(doc) => format!(
                    "prune: terminate {} (group `{}` is no longer in the desired state at commit {commit})",
                    doc.instance_ids.join(", "),
                    doc.group
                ),
            },
        }
    }
}

/// The id to insert the planner's plan `proposed` under, or `None` to skip it.
///
/// Plan ids never repeat (launch tokens derive from them). The planner's id is a hash of
/// the revision and the steps, so the same proposal can come back at the same revision:
/// - it is the active plan (or any active plan): skip, it is already running;
/// - it was cancelled: skip, an operator stopped exactly these steps (a new commit or a
///   different observation gives a new id);
/// - it succeeded or was superseded and the same steps are needed again (an instance
///   vanished twice at the same revision, say), or it failed or rolled back and an
///   explicit retry dropped the failure record (until then the planner blocks that hash
///   and never proposes it): run it again as `<id>.r<k>`, at most [`MAX_RERUNS`] times
///   after a success;
/// - its id, or a re-run's, belonged to a plan that retention pruned: take the next one.
fn fresh_plan_id(store: &Store, proposed: &str) -> Result<Option<PlanId>, ExecutorError> {
    let mut id = PlanId::new(proposed);
    // Re-runs after a success (or supersession) at this revision: something keeps undoing
    // the plan's work (another owner's tags, say), and relaunching without end would only
    // grow the fleet's bill (issue 17, defect 1).
    let mut reruns = 0u32;
    for k in 1u32.. {
        let existing = store.plan(&id).map_err(store_err("read plan", &id))?;
        match existing.map(|p| p.plan.status) {
            // A pruned plan's id stays taken (retention): its launch tokens may still tag
            // instances, so a new plan under it could adopt them as its own launches.
            None if store
                .plan_id_used(&id)
                .map_err(store_err("read plan ids", &id))? => {}
            None => return Ok(Some(id)),
            Some(PlanStatus::Succeeded | PlanStatus::Superseded) => {
                reruns += 1;
                if reruns > MAX_RERUNS {
                    tracing::warn!(plan = %proposed, reruns = MAX_RERUNS, "the same plan was needed again too often at this revision; not running it again until the revision or the observation changes");
                    return Ok(None);
                }
            }
            // A failed or rolled-back plan is proposed again only once its failure record
            // is gone, that is after an explicit retry (crate::retry): a fresh id runs it.
            // Operator-driven, so not counted against the cap.
            Some(PlanStatus::Failed | PlanStatus::RolledBack) => {}
            Some(_) => return Ok(None),
        }
        id = PlanId::new(format!("{proposed}.r{k}"));
    }
    Ok(None)
}

/// How often one plan may run again at the same revision after it succeeded
/// (`<id>.r1` ... `.r<N>`); explicit retries of a failed plan are not counted.
pub(crate) const MAX_RERUNS: u32 = 3;

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use phoenix_store::StoreOptions;

    use super::*;

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn insert(store: &mut Store, id: &PlanId, status: PlanStatus) {
        let plan = NewPlan {
            id: id.clone(),
            group: GroupName::new("web").expect("a valid name"),
            kind: PlanKind::Prune,
            commit: "c".into(),
            status: PlanStatus::Running,
            doc: serde_json::json!({}),
            steps: Vec::new(),
        };
        store.insert_plan(&plan, t(0)).expect("insert");
        store.set_plan_status(id, status, t(1)).expect("status");
    }

    /// Issue 17, defect 1: the same plan needed again and again at one revision after
    /// succeeding (something keeps undoing it) runs `.r1` to `.r3`, then no more.
    #[test]
    fn reruns_after_success_are_capped() {
        let mut store = Store::open_in_memory(StoreOptions::default()).expect("open");
        let mut issued = Vec::new();
        while let Some(id) = fresh_plan_id(&store, "p").expect("read") {
            insert(&mut store, &id, PlanStatus::Succeeded);
            issued.push(id.to_string());
            assert!(issued.len() <= 10, "no cap: {issued:?}");
        }
        assert_eq!(issued, ["p", "p.r1", "p.r2", "p.r3"]);
    }

    /// Explicit retries of a failed plan are the operator's and are not capped.
    #[test]
    fn retries_after_failure_are_not_counted() {
        let mut store = Store::open_in_memory(StoreOptions::default()).expect("open");
        for _ in 0..6 {
            let id = fresh_plan_id(&store, "p").expect("read").expect("an id");
            insert(&mut store, &id, PlanStatus::Failed);
        }
        let next = fresh_plan_id(&store, "p").expect("read");
        assert_eq!(next.map(|id| id.to_string()).as_deref(), Some("p.r6"));
    }

    /// Retention: the id of a pruned plan is never issued again.
    #[test]
    fn a_pruned_plan_id_is_skipped() {
        let mut store = Store::open_in_memory(StoreOptions::default()).expect("open");
        insert(&mut store, &PlanId::new("p"), PlanStatus::Cancelled);
        let pruned = store.prune_finished_plans(t(100)).expect("prune");
        assert_eq!(pruned, 1);
        assert!(store.plan(&PlanId::new("p")).expect("read").is_none());
        let next = fresh_plan_id(&store, "p").expect("read");
        assert_eq!(next.map(|id| id.to_string()).as_deref(), Some("p.r1"));
    }
}
