-- Traffic steps (design section 11): `steps.action` gains the values `register`,
-- `wait_in_service`, `deregister` and `wait_drained`, so the CHECK of migration 4 is
-- widened. SQLite cannot alter a CHECK in place, so `steps` is rebuilt exactly as
-- migration 4 rebuilt it (copied into a table with the wider constraint, the old table
-- dropped and the copy renamed; no table references `steps`; its one index recreated).
CREATE TABLE steps_v6 (
    plan_id      TEXT NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    idx          INTEGER NOT NULL CHECK (idx >= 0),
    action       TEXT NOT NULL CHECK (action IN ('launch', 'wait_healthy', 'bake',
                    'terminate', 'rollback', 'register', 'wait_in_service', 'deregister',
                    'wait_drained')),
    status       TEXT NOT NULL CHECK (status IN ('pending', 'intent', 'done', 'failed')),
    attempt      INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    launch_token TEXT,
    detail       TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail)),
    error        TEXT,
    started_at   INTEGER,
    finished_at  INTEGER,
    PRIMARY KEY (plan_id, idx)
) WITHOUT ROWID;
INSERT INTO steps_v6 (plan_id, idx, action, status, attempt, launch_token, detail, error,
                      started_at, finished_at)
    SELECT plan_id, idx, action, status, attempt, launch_token, detail, error, started_at,
           finished_at
    FROM steps;

DROP TABLE steps;
ALTER TABLE steps_v6 RENAME TO steps;

CREATE UNIQUE INDEX steps_by_launch_token ON steps (launch_token) WHERE launch_token IS NOT NULL;
