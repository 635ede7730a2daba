-- Issue 17 / design section 16: launch tokens derive from plan ids, so a plan id must
-- never be used twice, even after its plan was pruned. Pruning records the id here, and
-- `Store::plan_id_used` answers for both tables.
CREATE TABLE pruned_plan_ids (
    id        TEXT PRIMARY KEY,
    pruned_at INTEGER NOT NULL
) WITHOUT ROWID;
