-- Change-window overrides (design section 14): every accepted
-- `POST /api/v1/windows/override`, kept as history (who, when, why, until when). The
-- newest row is the override in force while `until_at` is in the future; a newer row
-- replaces it (so an override is shortened or ended by posting an earlier `until`).
CREATE TABLE window_overrides (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at   INTEGER NOT NULL,
    until_at     INTEGER NOT NULL CHECK (until_at > created_at),
    reason       TEXT NOT NULL CHECK (length(trim(reason)) > 0),
    requested_by TEXT NOT NULL CHECK (length(requested_by) > 0)
);
