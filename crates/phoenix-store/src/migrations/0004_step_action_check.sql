-- Step actions become a closed set: a CHECK constraint keeps `steps.action` to the values
-- of `StepAction` (launch, wait_healthy, bake, terminate, rollback), so a step the
-- executor cannot run is refused at write time instead of being found at run time.
--
-- SQLite cannot add a CHECK to an existing column, so `steps` is rebuilt: copied into a
-- table with the constraint (an unknown action already stored makes this migration fail,
-- and the database is left as it was), the old table dropped and the copy renamed. No
-- table references `steps`, so dropping it cascades nowhere; its one index is recreated.
CREATE TABLE steps_v4 (
    plan_id      TEXT NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    idx          INTEGER NOT NULL CHECK (idx >= 0),
    action       TEXT NOT NULL CHECK (action IN ('launch', 'wait_healthy', 'bake',
                    'terminate', 'rollback')),
    status       TEXT NOT NULL CHECK (status IN ('pending', 'intent', 'done', 'failed')),
    attempt      INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    launch_token TEXT,
    detail       TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail)),
    error        TEXT,
    started_at   INTEGER,
    finished_at  INTEGER,
    PRIMARY KEY (plan_id, idx)
) WITHOUT ROWID;
INSERT INTO steps_v4 (plan_id, idx, action, status, attempt, launch_token, detail, error,
                      started_at, finished_at)
    SELECT plan_id, idx, action, status, attempt, launch_token, detail, error, started_at,
           finished_at
    FROM steps;

DROP TABLE steps;
ALTER TABLE steps_v4 RENAME TO steps;

CREATE UNIQUE INDEX steps_by_launch_token ON steps (launch_token) WHERE launch_token IS NOT NULL;
