-- announces: a silent announce (child said NO_REPLY / ANNOUNCE_SKIP) keeps
-- the run's status visible but is not shown to the requester's user.
ALTER TABLE announces ADD COLUMN silent INTEGER NOT NULL DEFAULT 0;
ALTER TABLE announces ADD COLUMN notified_at INTEGER;
-- the process that owns a run may be asked to cancel it from elsewhere.
CREATE INDEX runs_owner ON runs (owner_instance, state);
-- process liveness for restart recovery and cross-process work.
CREATE TABLE instances (
    id           TEXT PRIMARY KEY,
    pid          INTEGER NOT NULL,
    host         TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
);
