-- Prune plans: a plan that terminates the instances of a group no longer in the desired
-- state converges to no spec hash and follows no rollout strategy. `target_hash` and
-- `strategy` become nullable (NULL exactly together: a CHECK ties them), instead of a
-- made-up hash. SQLite cannot drop NOT NULL in place, so the table is rebuilt.
--
-- `steps` references `plans` with ON DELETE CASCADE, and dropping a table with foreign
-- keys on deletes its rows first (which would cascade to every step). So both tables are
-- copied, the old ones dropped children first, and the copies renamed; the rename
-- rewrites `steps`' reference to the new `plans`. Every index is recreated as it was.
CREATE TABLE plans_v3 (
    id          TEXT PRIMARY KEY,
    group_name  TEXT NOT NULL,
    target_hash TEXT,
    commit_id   TEXT NOT NULL,
    strategy    TEXT CHECK (strategy IN ('rolling', 'blue-green', 'canary')),
    status      TEXT NOT NULL CHECK (status IN ('pending', 'awaiting_approval', 'running',
                    'succeeded', 'failed', 'rolled_back', 'cancelled', 'superseded')),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    doc         TEXT NOT NULL CHECK (json_valid(doc)),
    CHECK ((target_hash IS NULL) = (strategy IS NULL))
);
INSERT INTO plans_v3 (id, group_name, target_hash, commit_id, strategy, status, created_at,
                      updated_at, doc)
    SELECT id, group_name, target_hash, commit_id, strategy, status, created_at, updated_at,
           doc
    FROM plans;

CREATE TABLE steps_v3 (
    plan_id      TEXT NOT NULL REFERENCES plans_v3 (id) ON DELETE CASCADE,
    idx          INTEGER NOT NULL CHECK (idx >= 0),
    action       TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'intent', 'done', 'failed')),
    attempt      INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    launch_token TEXT,
    detail       TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail)),
    error        TEXT,
    started_at   INTEGER,
    finished_at  INTEGER,
    PRIMARY KEY (plan_id, idx)
) WITHOUT ROWID;
INSERT INTO steps_v3 (plan_id, idx, action, status, attempt, launch_token, detail, error,
                      started_at, finished_at)
    SELECT plan_id, idx, action, status, attempt, launch_token, detail, error, started_at,
           finished_at
    FROM steps;

DROP TABLE steps;
DROP TABLE plans;
ALTER TABLE plans_v3 RENAME TO plans;
ALTER TABLE steps_v3 RENAME TO steps;

CREATE UNIQUE INDEX plans_one_active_per_group ON plans (group_name)
    WHERE status IN ('pending', 'awaiting_approval', 'running');
CREATE INDEX plans_by_group ON plans (group_name, created_at);
CREATE INDEX plans_by_created ON plans (created_at, id);
CREATE INDEX plans_active_by_created ON plans (created_at, id)
    WHERE status IN ('pending', 'awaiting_approval', 'running');
CREATE UNIQUE INDEX steps_by_launch_token ON steps (launch_token) WHERE launch_token IS NOT NULL;
