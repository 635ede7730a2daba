-- Plans are never deleted, so queries that read only some of them must not scan them all.
-- The executor lists the active plans on every pass: an index holding only active plans,
-- in the order it reads them, keeps that proportional to the active plans, not to every
-- plan ever made. The newest-first list the status view reads (200 per pass) gets the
-- full ordering key so SQLite needs no temporary sort.
DROP INDEX plans_by_created;
CREATE INDEX plans_by_created ON plans (created_at, id);
CREATE INDEX plans_active_by_created ON plans (created_at, id)
    WHERE status IN ('pending', 'awaiting_approval', 'running');
