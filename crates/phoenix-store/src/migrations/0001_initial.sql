-- Phoenix store schema, migration 1: the initial schema.
-- Conventions: times are INTEGER unix milliseconds (UTC); JSON is TEXT (checked with
-- json_valid); spec hashes are their text form `v1:sha256:<hex>`; enums are lowercase
-- snake_case TEXT constrained by CHECK. docs/store.md documents every column.

CREATE TABLE schema_migrations (
    version INTEGER PRIMARY KEY,
    name    TEXT NOT NULL
);

-- Every revision the source produced, accepted or rejected. One row per revision id.
CREATE TABLE revisions (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    status        TEXT NOT NULL CHECK (status IN ('accepted', 'rejected')),
    error_path    TEXT,
    error_line    INTEGER,
    error_column  INTEGER,
    error_message TEXT,
    author        TEXT,
    message       TEXT,
    first_seen_at INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    CHECK ((status = 'accepted') = (error_message IS NULL))
);
CREATE INDEX revisions_by_last_seen ON revisions (last_seen_at, seq);

-- Plans: typed columns for what is queried, the executor's own plan document as JSON.
CREATE TABLE plans (
    id          TEXT PRIMARY KEY,
    group_name  TEXT NOT NULL,
    target_hash TEXT NOT NULL,
    commit_id   TEXT NOT NULL,
    strategy    TEXT NOT NULL CHECK (strategy IN ('rolling', 'blue-green', 'canary')),
    status      TEXT NOT NULL CHECK (status IN ('pending', 'awaiting_approval', 'running',
                    'succeeded', 'failed', 'rolled_back', 'cancelled', 'superseded')),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    doc         TEXT NOT NULL CHECK (json_valid(doc))
);
-- At most one active plan per group, enforced by the database itself.
CREATE UNIQUE INDEX plans_one_active_per_group ON plans (group_name)
    WHERE status IN ('pending', 'awaiting_approval', 'running');
CREATE INDEX plans_by_group ON plans (group_name, created_at);
CREATE INDEX plans_by_created ON plans (created_at);

-- Steps of a plan, in order. `intent` is written before a step acts, `done`/`failed` after.
CREATE TABLE steps (
    plan_id      TEXT NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
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
CREATE UNIQUE INDEX steps_by_launch_token ON steps (launch_token) WHERE launch_token IS NOT NULL;

-- Incidents: a divergence, failed plan, rollback or source error, from open to resolved.
-- group_name is NULL for incidents that concern no group (source errors).
CREATE TABLE incidents (
    id               TEXT PRIMARY KEY,
    group_name       TEXT,
    kind             TEXT NOT NULL,
    opened_at        INTEGER NOT NULL,
    resolved_at      INTEGER,
    desired_hash     TEXT,
    observed_hashes  TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(observed_hashes)),
    commit_id        TEXT,
    message          TEXT,
    last_notified_at INTEGER
);
-- At most one open incident per (group, kind).
CREATE UNIQUE INDEX incidents_one_open ON incidents (ifnull(group_name, ''), kind)
    WHERE resolved_at IS NULL;
CREATE INDEX incidents_by_opened ON incidents (opened_at);

-- The alert outbox: written before sending, delivered per receiver in `seq` order.
CREATE TABLE outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id     TEXT NOT NULL UNIQUE,
    receiver        TEXT NOT NULL,
    event           TEXT NOT NULL,
    incident_id     TEXT,
    body            TEXT NOT NULL CHECK (json_valid(body)),
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    delivered_at    INTEGER,
    expired_at      INTEGER,
    last_error      TEXT
);
CREATE INDEX outbox_pending ON outbox (receiver, seq)
    WHERE delivered_at IS NULL AND expired_at IS NULL;

-- Generations per group, newest last; trimmed to the last N per group.
CREATE TABLE history (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    group_name TEXT NOT NULL,
    spec_hash  TEXT NOT NULL,
    commit_id  TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    outcome    TEXT NOT NULL CHECK (outcome IN ('progressing', 'succeeded', 'failed',
                   'rolled_back', 'superseded'))
);
CREATE INDEX history_by_group ON history (group_name, seq);

-- Hashes that failed (rolled back): not retried until a new commit or an explicit retry.
CREATE TABLE failed_hashes (
    group_name TEXT NOT NULL,
    spec_hash  TEXT NOT NULL,
    commit_id  TEXT NOT NULL,
    failed_at  INTEGER NOT NULL,
    reason     TEXT,
    PRIMARY KEY (group_name, spec_hash)
) WITHOUT ROWID;

-- Small JSON documents by key, such as the planner's memory.
CREATE TABLE kv (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL CHECK (json_valid(value)),
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
