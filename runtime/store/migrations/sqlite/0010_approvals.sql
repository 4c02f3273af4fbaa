-- A tool call of a background run that needs a human's approval parks the
-- run (state input_required) and waits here. calls holds the parked tool
-- call and the results of the calls the model issued with it, so the turn
-- resumes exactly where it stopped; consumed marks a decision already
-- applied (the approved call runs once).
CREATE TABLE approvals (
    id            TEXT PRIMARY KEY,
    run_id        TEXT NOT NULL,
    tool          TEXT NOT NULL,
    args_summary  TEXT NOT NULL DEFAULT '',
    class         TEXT NOT NULL DEFAULT '',
    caller_key    TEXT NOT NULL,
    requester_key TEXT NOT NULL,
    call          TEXT NOT NULL DEFAULT '{}',
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    state         TEXT NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending','approved','denied','expired')),
    decided_by    TEXT NOT NULL DEFAULT '',
    decided_at    INTEGER,
    consumed      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX approvals_run     ON approvals (run_id);
CREATE INDEX approvals_pending ON approvals (state, expires_at);
