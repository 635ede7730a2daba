//! Plans and their steps, and the executor's write-ahead protocol: a step's intent is
//! committed before the step acts ([`Store::write_intent`]) and its outcome after
//! ([`Store::mark_step_done`], [`Store::mark_step_failed`]). After a crash,
//! [`Store::unfinished_plans`] returns every active plan with its steps, so the executor
//! can look up what an `intent` step created (by its launch token) instead of acting again.
//!
//! A plan's kind is typed ([`PlanKind`]: a rollout with its target hash and strategy, or a
//! prune with neither), and so is a step's action ([`crate::StepAction`], kept to its
//! values by a CHECK on `steps.action`). The executor's own documents are not known
//! here: they are stored as JSON beside the typed columns that are queried (group, target
//! hash, commit, strategy, status, action).

use std::collections::BTreeMap;
use std::time::SystemTime;

use phoenix_core::spec::Strategy;
use phoenix_core::{GroupName, SpecHash};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ValueRef};
use rusqlite::{OptionalExtension, Row, Transaction};
use serde::Serialize;

use crate::sql::{
    group_col, is_unique_violation, json_col, millis, opt_hash_col, opt_time_col, time_col,
};
use crate::types::{PlanId, PlanStatus, StepAction, StepStatus};
use crate::{Result, Store, StoreError};

/// What a plan does, as stored in the columns `target_hash` and `strategy` (both set for
/// a rollout, both NULL for a prune; a CHECK constraint ties them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PlanKind {
    /// Converge a desired group to a spec hash, following its rollout strategy.
    Rollout {
        /// The hash the group converges to.
        target_hash: SpecHash,
        /// The rollout strategy.
        strategy: Strategy,
    },
    /// Terminate the instances of a group gone from the desired state: nothing
    /// converges to a spec, no strategy applies.
    Prune,
}

impl PlanKind {
    /// The target hash of a rollout; `None` for a prune.
    pub fn target_hash(&self) -> Option<SpecHash> {
        match self {
            PlanKind::Rollout { target_hash, .. } => Some(*target_hash),
            PlanKind::Prune => None,
        }
    }

    /// The strategy of a rollout; `None` for a prune.
    pub fn strategy(&self) -> Option<Strategy> {
        match self {
            PlanKind::Rollout { strategy, .. } => Some(*strategy),
            PlanKind::Prune => None,
        }
    }

    /// `rollout` or `prune`.
    pub fn as_str(&self) -> &'static str {
        match self {
            PlanKind::Rollout { .. } => "rollout",
            PlanKind::Prune => "prune",
        }
    }
}

/// A plan to insert with [`Store::insert_plan`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewPlan {
    /// Chosen by the executor; never reused (it feeds launch tokens).
    pub id: PlanId,
    /// The group the plan changes.
    pub group: GroupName,
    /// A rollout (with its target hash and strategy) or a prune.
    pub kind: PlanKind,
    /// The commit the target spec (or, for a prune, the removal) came from.
    pub commit: String,
    /// The initial status: pending, awaiting approval or running.
    pub status: PlanStatus,
    /// The executor's plan document.
    pub doc: serde_json::Value,
    /// The steps, in order; they get indexes 0, 1, ...
    pub steps: Vec<NewStep>,
}

/// A step to insert, as part of a [`NewPlan`] or with [`Store::append_steps`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewStep {
    /// What the step does.
    pub action: StepAction,
    /// Everything else about the step, as the executor sees it.
    pub detail: serde_json::Value,
}

/// A stored plan, without its steps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanRecord {
    /// The plan id.
    pub id: PlanId,
    /// The group.
    pub group: GroupName,
    /// A rollout (with its target hash and strategy) or a prune.
    pub kind: PlanKind,
    /// The commit.
    pub commit: String,
    /// The status.
    pub status: PlanStatus,
    /// When it was inserted.
    pub created_at: SystemTime,
    /// When it or one of its steps last changed.
    pub updated_at: SystemTime,
    /// The executor's plan document.
    pub doc: serde_json::Value,
}

/// A stored step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRecord {
    /// The plan it belongs to.
    pub plan_id: PlanId,
    /// Its position in the plan, from 0.
    pub index: u32,
    /// What it does.
    pub action: StepAction,
    /// Its status.
    pub status: StepStatus,
    /// The attempt of the last intent (0 before the first).
    pub attempt: u32,
    /// The launch token of the last intent, when the step launches instances.
    pub launch_token: Option<String>,
    /// The executor's step detail.
    pub detail: serde_json::Value,
    /// Why the step failed, when it did.
    pub error: Option<String>,
    /// When the last intent was written.
    pub started_at: Option<SystemTime>,
    /// When the step was marked done or failed.
    pub finished_at: Option<SystemTime>,
}

/// A plan with its steps in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanWithSteps {
    /// The plan.
    pub plan: PlanRecord,
    /// Its steps, by index.
    pub steps: Vec<StepRecord>,
}

/// What [`Store::write_intent`] records before a step acts.
#[derive(Debug, Clone, PartialEq)]
pub struct StepIntent {
    /// The attempt number. The first intent of a step may use any number; a new intent
    /// for a step in `intent` must not go back, and one after `failed` must go forward.
    pub attempt: u32,
    /// The deterministic launch token (plan id, step, attempt) stamped on what the step
    /// launches; `None` for steps that launch nothing. Unique across all steps.
    pub launch_token: Option<String>,
    /// New detail for the step, replacing the stored one; `None` keeps it.
    pub detail: Option<serde_json::Value>,
}

/// Strategy as stored: the spec's own spelling.
fn strategy_str(strategy: Strategy) -> &'static str {
    match strategy {
        Strategy::Rolling => "rolling",
        Strategy::BlueGreen => "blue-green",
        Strategy::Canary => "canary",
    }
}

struct StrategyCol(Option<Strategy>);

impl FromSql for StrategyCol {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        if value == ValueRef::Null {
            return Ok(StrategyCol(None));
        }
        match value.as_str()? {
            "rolling" => Ok(StrategyCol(Some(Strategy::Rolling))),
            "blue-green" => Ok(StrategyCol(Some(Strategy::BlueGreen))),
            "canary" => Ok(StrategyCol(Some(Strategy::Canary))),
            _ => Err(FromSqlError::InvalidType),
        }
    }
}

const PLAN_COLUMNS: &str =
    "id, group_name, target_hash, commit_id, strategy, status, created_at, updated_at, doc";
const STEP_COLUMNS: &str = "plan_id, idx, action, status, attempt, launch_token, detail, error, \
                            started_at, finished_at";

fn plan_from_row(row: &Row<'_>) -> rusqlite::Result<PlanRecord> {
    Ok(PlanRecord {
        id: row.get(0)?,
        group: group_col(row, 1)?,
        kind: match (opt_hash_col(row, 2)?, row.get::<_, StrategyCol>(4)?.0) {
            (Some(target_hash), Some(strategy)) => PlanKind::Rollout {
                target_hash,
                strategy,
            },
            (None, None) => PlanKind::Prune,
            // The CHECK on the table makes this unreachable for rows Phoenix wrote.
            _ => {
                return Err(rusqlite::Error::FromSqlConversionFailure(
                    4,
                    rusqlite::types::Type::Text,
                    "target_hash and strategy must be both set or both NULL".into(),
                ));
            }
        },
        commit: row.get(3)?,
        status: row.get(5)?,
        created_at: time_col(row, 6)?,
        updated_at: time_col(row, 7)?,
        doc: json_col(row, 8)?,
    })
}

fn step_from_row(row: &Row<'_>) -> rusqlite::Result<StepRecord> {
    Ok(StepRecord {
        plan_id: row.get(0)?,
        index: row.get(1)?,
        action: row.get(2)?,
        status: row.get(3)?,
        attempt: row.get(4)?,
        launch_token: row.get(5)?,
        detail: json_col(row, 6)?,
        error: row.get(7)?,
        started_at: opt_time_col(row, 8)?,
        finished_at: opt_time_col(row, 9)?,
    })
}

fn plan_status(tx: &Transaction<'_>, plan: &PlanId, operation: &'static str) -> Result<PlanStatus> {
    tx.prepare_cached("SELECT status FROM plans WHERE id = ?1")
        .and_then(|mut stmt| stmt.query_row([plan], |row| row.get(0)).optional())
        .map_err(StoreError::sqlite(operation))?
        .ok_or_else(|| StoreError::PlanNotFound { plan: plan.clone() })
}

fn active_plan_id(tx: &Transaction<'_>, group: &GroupName) -> Result<Option<PlanId>> {
    tx.prepare_cached(
        "SELECT id FROM plans WHERE group_name = ?1 \
         AND status IN ('pending', 'awaiting_approval', 'running')",
    )
    .and_then(|mut stmt| {
        stmt.query_row([group.as_str()], |row| row.get(0))
            .optional()
    })
    .map_err(StoreError::sqlite("find active plan"))
}

fn insert_steps(tx: &Transaction<'_>, plan: &PlanId, first: u32, steps: &[NewStep]) -> Result<()> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO steps (plan_id, idx, action, status, detail) \
             VALUES (?1, ?2, ?3, 'pending', ?4)",
        )
        .map_err(StoreError::sqlite("insert step"))?;
    for (offset, step) in steps.iter().enumerate() {
        let index = u32::try_from(offset)
            .ok()
            .and_then(|o| first.checked_add(o))
            .expect("a plan never has 4 billion steps");
        stmt.execute((plan, index, step.action, step.detail.to_string()))
            .map_err(StoreError::sqlite("insert step"))?;
    }
    Ok(())
}

fn insert_plan_tx(tx: &Transaction<'_>, plan: &NewPlan, now: i64) -> Result<()> {
    if !plan.status.is_active() {
        return Err(StoreError::InitialPlanStatus {
            plan: plan.id.clone(),
            status: plan.status,
        });
    }
    let exists = tx
        .prepare_cached("SELECT 1 FROM plans WHERE id = ?1")
        .and_then(|mut stmt| stmt.exists([&plan.id]))
        .map_err(StoreError::sqlite("insert plan"))?;
    if exists {
        return Err(StoreError::DuplicatePlan {
            plan: plan.id.clone(),
        });
    }
    if let Some(existing) = active_plan_id(tx, &plan.group)? {
        return Err(StoreError::ActivePlanExists {
            group: plan.group.clone(),
            existing,
        });
    }
    let inserted = tx
        .prepare_cached(
            "INSERT INTO plans (id, group_name, target_hash, commit_id, strategy, status, \
         created_at, updated_at, doc) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)",
        )
        .and_then(|mut stmt| {
            stmt.execute((
                &plan.id,
                plan.group.as_str(),
                plan.kind.target_hash().map(|h| h.to_string()),
                &plan.commit,
                plan.kind.strategy().map(strategy_str),
                plan.status,
                now,
                plan.doc.to_string(),
            ))
        })
        .map_err(|source| StoreError::Sqlite {
            operation: "insert plan",
            source,
        });
    if let Err(err) = inserted {
        // Unreachable while the checks above are right (this transaction holds the write
        // lock): the partial unique index is the backstop, and still yields the typed error.
        if let StoreError::Sqlite { source, .. } = &err
            && is_unique_violation(source)
            && let Some(existing) = active_plan_id(tx, &plan.group)?
        {
            return Err(StoreError::ActivePlanExists {
                group: plan.group.clone(),
                existing,
            });
        }
        return Err(err);
    }
    insert_steps(tx, &plan.id, 0, &plan.steps)
}

/// The first step of `plan` in `intent`, if any.
fn step_in_flight(tx: &Transaction<'_>, plan: &PlanId) -> Result<Option<u32>> {
    tx.prepare_cached(
        "SELECT idx FROM steps WHERE plan_id = ?1 AND status = 'intent' ORDER BY idx LIMIT 1",
    )
    .and_then(|mut stmt| stmt.query_row([plan], |row| row.get(0)).optional())
    .map_err(StoreError::sqlite("find step in flight"))
}

fn set_status_tx(tx: &Transaction<'_>, plan: &PlanId, to: PlanStatus, now: i64) -> Result<()> {
    let from = plan_status(tx, plan, "set plan status")?;
    if !from.is_active() && from != to {
        return Err(StoreError::PlanTransition {
            plan: plan.clone(),
            from,
            to,
        });
    }
    if !to.is_active()
        && let Some(index) = step_in_flight(tx, plan)?
    {
        return Err(StoreError::StepInFlight {
            plan: plan.clone(),
            index,
            to,
        });
    }
    tx.prepare_cached("UPDATE plans SET status = ?2, updated_at = ?3 WHERE id = ?1")
        .and_then(|mut stmt| stmt.execute((plan, to, now)))
        .map_err(StoreError::sqlite("set plan status"))?;
    Ok(())
}

/// The active plans, oldest first. Its WHERE clause is the one of the partial index
/// `plans_active_by_created`, so SQLite reads only active plans (a test checks the plan).
fn unfinished_plans_sql() -> String {
    format!(
        "SELECT {PLAN_COLUMNS} FROM plans \
         WHERE status IN ('pending', 'awaiting_approval', 'running') \
         ORDER BY created_at, id"
    )
}

impl Store {
    /// Insert a plan and its steps (all `pending`) at `now`. Fails with
    /// [`StoreError::ActivePlanExists`] when the group already has an active plan.
    pub fn insert_plan(&mut self, plan: &NewPlan, now: SystemTime) -> Result<()> {
        let now = millis(now)?;
        let tx = self.begin("insert plan")?;
        insert_plan_tx(&tx, plan, now)?;
        tx.commit().map_err(StoreError::sqlite("insert plan"))
    }

    /// Mark the active plan `old` superseded and insert `new` for the same group, in one
    /// transaction. Like every transition to a final status, it fails with
    /// [`StoreError::StepInFlight`] while a step of `old` has an intent not yet marked done
    /// or failed: finish the in-flight step first, then re-plan.
    pub fn supersede_plan(&mut self, old: &PlanId, new: &NewPlan, now: SystemTime) -> Result<()> {
        let now = millis(now)?;
        let tx = self.begin("supersede plan")?;
        let old_group: GroupName = tx
            .query_row("SELECT group_name FROM plans WHERE id = ?1", [old], |row| {
                group_col(row, 0)
            })
            .optional()
            .map_err(StoreError::sqlite("supersede plan"))?
            .ok_or_else(|| StoreError::PlanNotFound { plan: old.clone() })?;
        if old_group != new.group {
            return Err(StoreError::SupersedeOtherGroup {
                old: old.clone(),
                old_group,
                new: new.id.clone(),
                new_group: new.group.clone(),
            });
        }
        let from = plan_status(&tx, old, "supersede plan")?;
        if !from.is_active() {
            return Err(StoreError::PlanTransition {
                plan: old.clone(),
                from,
                to: PlanStatus::Superseded,
            });
        }
        set_status_tx(&tx, old, PlanStatus::Superseded, now)?;
        insert_plan_tx(&tx, new, now)?;
        tx.commit().map_err(StoreError::sqlite("supersede plan"))
    }

    /// Change a plan's status. Active plans may move between active statuses or to any
    /// final one; a final status never changes (setting it again is a no-op). Moving to a
    /// final status fails with [`StoreError::StepInFlight`] while a step is in `intent`.
    pub fn set_plan_status(
        &mut self,
        plan: &PlanId,
        to: PlanStatus,
        now: SystemTime,
    ) -> Result<()> {
        let now = millis(now)?;
        let tx = self.begin("set plan status")?;
        set_status_tx(&tx, plan, to, now)?;
        tx.commit().map_err(StoreError::sqlite("set plan status"))
    }

    /// Replace the plan's JSON document.
    pub fn update_plan_doc(
        &mut self,
        plan: &PlanId,
        doc: &serde_json::Value,
        now: SystemTime,
    ) -> Result<()> {
        let now = millis(now)?;
        let changed = self
            .conn
            .prepare_cached("UPDATE plans SET doc = ?2, updated_at = ?3 WHERE id = ?1")
            .and_then(|mut stmt| stmt.execute((plan, doc.to_string(), now)))
            .map_err(StoreError::sqlite("update plan document"))?;
        if changed == 0 {
            return Err(StoreError::PlanNotFound { plan: plan.clone() });
        }
        Ok(())
    }

    /// Append steps to an active plan; returns the index of the first one appended.
    pub fn append_steps(
        &mut self,
        plan: &PlanId,
        steps: &[NewStep],
        now: SystemTime,
    ) -> Result<u32> {
        let now = millis(now)?;
        let tx = self.begin("append steps")?;
        let status = plan_status(&tx, plan, "append steps")?;
        if !status.is_active() {
            return Err(StoreError::PlanTransition {
                plan: plan.clone(),
                from: status,
                to: status,
            });
        }
        let next: u32 = tx
            .query_row(
                "SELECT ifnull(max(idx) + 1, 0) FROM steps WHERE plan_id = ?1",
                [plan],
                |row| row.get(0),
            )
            .map_err(StoreError::sqlite("append steps"))?;
        insert_steps(&tx, plan, next, steps)?;
        tx.execute(
            "UPDATE plans SET updated_at = ?2 WHERE id = ?1",
            (plan, now),
        )
        .map_err(StoreError::sqlite("append steps"))?;
        tx.commit().map_err(StoreError::sqlite("append steps"))?;
        Ok(next)
    }

    /// Commit the intent to execute step `index` of `plan` before executing it: the step
    /// becomes `intent` with the attempt and launch token given. The plan must be running.
    /// When this returns, the intent survives a crash of the process.
    pub fn write_intent(
        &mut self,
        plan: &PlanId,
        index: u32,
        intent: &StepIntent,
        now: SystemTime,
    ) -> Result<()> {
        let now = millis(now)?;
        let tx = self.begin("write step intent")?;
        // Fast path: one guarded UPDATE; diagnose only when it matched nothing.
        let changed = tx
            .prepare_cached(
                "UPDATE steps SET status = 'intent', attempt = ?3, launch_token = ?4, \
                 detail = ifnull(?5, detail), error = NULL, started_at = ?6, finished_at = NULL \
                 WHERE plan_id = ?1 AND idx = ?2 \
                 AND (status = 'pending' OR (status = 'intent' AND attempt <= ?3) \
                      OR (status = 'failed' AND attempt < ?3)) \
                 AND (SELECT status FROM plans WHERE id = ?1) = 'running'",
            )
            .and_then(|mut stmt| {
                stmt.execute((
                    plan,
                    index,
                    intent.attempt,
                    &intent.launch_token,
                    intent.detail.as_ref().map(ToString::to_string),
                    now,
                ))
            })
            .map_err(|source| match &intent.launch_token {
                Some(token) if is_unique_violation(&source) => StoreError::LaunchTokenInUse {
                    token: token.clone(),
                },
                _ => StoreError::Sqlite {
                    operation: "write step intent",
                    source,
                },
            })?;
        if changed == 0 {
            return Err(diagnose_intent(&tx, plan, index, intent.attempt));
        }
        touch_plan(&tx, plan, now, "write step intent")?;
        tx.commit().map_err(StoreError::sqlite("write step intent"))
    }

    /// Record that step `index` of `plan`, in `intent`, finished successfully. `detail`,
    /// when given, replaces the stored detail (for example with the instance ids launched).
    pub fn mark_step_done(
        &mut self,
        plan: &PlanId,
        index: u32,
        detail: Option<&serde_json::Value>,
        now: SystemTime,
    ) -> Result<()> {
        self.finish_step(plan, index, StepStatus::Done, None, detail, now)
    }

    /// Record that step `index` of `plan`, in `intent`, failed with `error`.
    pub fn mark_step_failed(
        &mut self,
        plan: &PlanId,
        index: u32,
        error: &str,
        detail: Option<&serde_json::Value>,
        now: SystemTime,
    ) -> Result<()> {
        self.finish_step(plan, index, StepStatus::Failed, Some(error), detail, now)
    }

    fn finish_step(
        &mut self,
        plan: &PlanId,
        index: u32,
        to: StepStatus,
        error: Option<&str>,
        detail: Option<&serde_json::Value>,
        now: SystemTime,
    ) -> Result<()> {
        let operation = match to {
            StepStatus::Done => "mark step done",
            _ => "mark step failed",
        };
        let now = millis(now)?;
        let tx = self.begin(operation)?;
        let changed = tx
            .prepare_cached(
                "UPDATE steps SET status = ?3, error = ?4, detail = ifnull(?5, detail), \
                 finished_at = ?6 WHERE plan_id = ?1 AND idx = ?2 AND status = 'intent'",
            )
            .and_then(|mut stmt| {
                stmt.execute((plan, index, to, error, detail.map(ToString::to_string), now))
            })
            .map_err(StoreError::sqlite(operation))?;
        if changed == 0 {
            let status: Option<StepStatus> = tx
                .query_row(
                    "SELECT status FROM steps WHERE plan_id = ?1 AND idx = ?2",
                    (plan, index),
                    |row| row.get(0),
                )
                .optional()
                .map_err(StoreError::sqlite(operation))?;
            return Err(match status {
                None => StoreError::StepNotFound {
                    plan: plan.clone(),
                    index,
                },
                Some(status) => StoreError::StepTransition {
                    plan: plan.clone(),
                    index,
                    status,
                    operation,
                },
            });
        }
        touch_plan(&tx, plan, now, operation)?;
        tx.commit().map_err(StoreError::sqlite(operation))
    }

    /// One plan with its steps.
    pub fn plan(&self, plan: &PlanId) -> Result<Option<PlanWithSteps>> {
        let record = self
            .conn
            .prepare_cached(&format!("SELECT {PLAN_COLUMNS} FROM plans WHERE id = ?1"))
            .and_then(|mut stmt| stmt.query_row([plan], plan_from_row).optional())
            .map_err(StoreError::sqlite("read plan"))?;
        record
            .map(|plan| {
                let steps = self.steps(&plan.id)?;
                Ok(PlanWithSteps { plan, steps })
            })
            .transpose()
    }

    /// The steps of a plan, by index.
    pub fn steps(&self, plan: &PlanId) -> Result<Vec<StepRecord>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {STEP_COLUMNS} FROM steps WHERE plan_id = ?1 ORDER BY idx"
            ))
            .map_err(StoreError::sqlite("read steps"))?;
        stmt.query_map([plan], step_from_row)
            .and_then(Iterator::collect)
            .map_err(StoreError::sqlite("read steps"))
    }

    /// Crash recovery: every active plan (pending, awaiting approval, running) with its
    /// steps, oldest plan first. Steps in `intent` may or may not have acted.
    pub fn unfinished_plans(&self) -> Result<Vec<PlanWithSteps>> {
        let plans: Vec<PlanRecord> = {
            let mut stmt = self
                .conn
                .prepare_cached(&unfinished_plans_sql())
                .map_err(StoreError::sqlite("list unfinished plans"))?;
            stmt.query_map([], plan_from_row)
                .and_then(Iterator::collect)
                .map_err(StoreError::sqlite("list unfinished plans"))?
        };
        plans
            .into_iter()
            .map(|plan| {
                let steps = self.steps(&plan.id)?;
                Ok(PlanWithSteps { plan, steps })
            })
            .collect()
    }

    /// The group's active plan, if any, with its steps.
    pub fn active_plan(&self, group: &GroupName) -> Result<Option<PlanWithSteps>> {
        let id: Option<PlanId> = self
            .conn
            .prepare_cached(
                "SELECT id FROM plans WHERE group_name = ?1 \
                 AND status IN ('pending', 'awaiting_approval', 'running')",
            )
            .and_then(|mut stmt| {
                stmt.query_row([group.as_str()], |row| row.get(0))
                    .optional()
            })
            .map_err(StoreError::sqlite("find active plan"))?;
        match id {
            Some(id) => self.plan(&id),
            None => Ok(None),
        }
    }

    /// The `limit` most recent plans (without steps), newest first; only `group`'s when given.
    pub fn recent_plans(&self, group: Option<&GroupName>, limit: usize) -> Result<Vec<PlanRecord>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {PLAN_COLUMNS} FROM plans WHERE ?1 IS NULL OR group_name = ?1 \
                 ORDER BY created_at DESC, id DESC LIMIT ?2"
            ))
            .map_err(StoreError::sqlite("list plans"))?;
        stmt.query_map((group.map(GroupName::as_str), limit), plan_from_row)
            .and_then(Iterator::collect)
            .map_err(StoreError::sqlite("list plans"))
    }

    /// How many plans are in each status (statuses with none are absent).
    pub fn plan_counts(&self) -> Result<BTreeMap<PlanStatus, u64>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT status, count(*) FROM plans GROUP BY status")
            .map_err(StoreError::sqlite("count plans"))?;
        stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .and_then(Iterator::collect)
            .map_err(StoreError::sqlite("count plans"))
    }

    /// The step that recorded `token` as its launch token: crash recovery maps an instance
    /// tagged `phoenix:launch-token` back to its step.
    pub fn step_by_launch_token(&self, token: &str) -> Result<Option<StepRecord>> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {STEP_COLUMNS} FROM steps WHERE launch_token = ?1"
            ))
            .and_then(|mut stmt| stmt.query_row([token], step_from_row).optional())
            .map_err(StoreError::sqlite("find step by launch token"))
    }

    /// Delete finished plans (and their steps) last updated before `before`; returns how
    /// many plans were deleted. Active plans are never deleted. Each deleted plan's id is
    /// kept in `pruned_plan_ids`, so [`Store::plan_id_used`] still knows it (its launch
    /// tokens must never be issued again).
    pub fn prune_finished_plans(&mut self, before: SystemTime) -> Result<usize> {
        let before = millis(before)?;
        let tx = self
            .conn
            .transaction()
            .map_err(StoreError::sqlite("prune plans"))?;
        let finished =
            "updated_at < ?1 AND status NOT IN ('pending', 'awaiting_approval', 'running')";
        tx.execute(
            &format!(
                "INSERT OR IGNORE INTO pruned_plan_ids (id, pruned_at) \
                 SELECT id, ?1 FROM plans WHERE {finished}"
            ),
            [before],
        )
        .map_err(StoreError::sqlite("prune plans"))?;
        let deleted = tx
            .execute(&format!("DELETE FROM plans WHERE {finished}"), [before])
            .map_err(StoreError::sqlite("prune plans"))?;
        tx.commit().map_err(StoreError::sqlite("prune plans"))?;
        Ok(deleted)
    }

    /// Whether `plan` names a plan that exists or existed and was pruned: such an id is
    /// never given to a new plan (design section 16).
    pub fn plan_id_used(&self, plan: &PlanId) -> Result<bool> {
        self.conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM plans WHERE id = ?1) \
                 OR EXISTS (SELECT 1 FROM pruned_plan_ids WHERE id = ?1)",
            )
            .and_then(|mut stmt| stmt.query_row([plan], |row| row.get(0)))
            .map_err(StoreError::sqlite("read plan ids"))
    }
}

fn touch_plan(
    tx: &Transaction<'_>,
    plan: &PlanId,
    now: i64,
    operation: &'static str,
) -> Result<()> {
    tx.prepare_cached("UPDATE plans SET updated_at = ?2 WHERE id = ?1")
        .and_then(|mut stmt| stmt.execute((plan, now)))
        .map_err(StoreError::sqlite(operation))?;
    Ok(())
}

/// Why a guarded intent UPDATE matched no row.
fn diagnose_intent(tx: &Transaction<'_>, plan: &PlanId, index: u32, attempt: u32) -> StoreError {
    const OPERATION: &str = "write step intent";
    let status = match plan_status(tx, plan, OPERATION) {
        Ok(status) => status,
        Err(err) => return err,
    };
    if status != PlanStatus::Running {
        return StoreError::PlanNotRunning {
            plan: plan.clone(),
            index,
            status,
        };
    }
    let step: rusqlite::Result<Option<(StepStatus, u32)>> = tx
        .query_row(
            "SELECT status, attempt FROM steps WHERE plan_id = ?1 AND idx = ?2",
            (plan, index),
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional();
    match step {
        Err(source) => StoreError::Sqlite {
            operation: OPERATION,
            source,
        },
        Ok(None) => StoreError::StepNotFound {
            plan: plan.clone(),
            index,
        },
        Ok(Some((status @ (StepStatus::Done | StepStatus::Pending), _))) => {
            StoreError::StepTransition {
                plan: plan.clone(),
                index,
                status,
                operation: OPERATION,
            }
        }
        Ok(Some((_, recorded))) => StoreError::AttemptNotIncreasing {
            plan: plan.clone(),
            index,
            attempt,
            recorded,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreOptions;

    /// Plans are never deleted: listing the active ones on every pass must not scan them all.
    #[test]
    fn listing_active_plans_reads_only_the_active_index() {
        let store = Store::open_in_memory(StoreOptions::default()).expect("open");
        let detail: Vec<String> = store
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", unfinished_plans_sql()))
            .and_then(|mut stmt| stmt.query_map([], |row| row.get(3))?.collect())
            .expect("query plan");
        assert_eq!(
            detail,
            ["SCAN plans USING INDEX plans_active_by_created"],
            "no full scan and no temporary sort"
        );
    }

    /// `steps.action` holds only [`StepAction`] values: SQL that writes another is refused
    /// by the CHECK constraint, and every known action reads back as itself.
    #[test]
    fn the_action_column_refuses_unknown_actions() {
        let mut store = Store::open_in_memory(StoreOptions::default()).expect("open");
        let hash: SpecHash = format!("v1:sha256:{}", "ab".repeat(32))
            .parse()
            .expect("hash");
        let plan = NewPlan {
            id: PlanId::new("p"),
            group: GroupName::new("web").expect("name"),
            kind: PlanKind::Rollout {
                target_hash: hash,
                strategy: Strategy::Rolling,
            },
            commit: "c".into(),
            status: PlanStatus::Running,
            doc: serde_json::json!({}),
            steps: StepAction::ALL
                .iter()
                .map(|action| NewStep {
                    action: *action,
                    detail: serde_json::json!({}),
                })
                .collect(),
        };
        store
            .insert_plan(&plan, SystemTime::UNIX_EPOCH)
            .expect("insert");
        let read = store.plan(&plan.id).expect("read").expect("found");
        let actions: Vec<StepAction> = read.steps.iter().map(|s| s.action).collect();
        assert_eq!(actions, StepAction::ALL);
        assert_eq!(read.plan.kind, plan.kind);

        let err = store
            .conn
            .execute(
                "INSERT INTO steps (plan_id, idx, action, status) VALUES ('p', 9, 'reboot', 'pending')",
                [],
            )
            .expect_err("an unknown action is refused");
        assert_eq!(
            err.sqlite_error_code(),
            Some(rusqlite::ErrorCode::ConstraintViolation),
            "{err}"
        );
        let half = store.conn.execute(
            "INSERT INTO plans (id, group_name, target_hash, commit_id, strategy, status, \
             created_at, updated_at, doc) VALUES ('h', 'other', NULL, 'c', 'rolling', \
             'pending', 0, 0, '{}')",
            [],
        );
        assert!(half.is_err(), "a strategy without a target hash is refused");
    }
}
