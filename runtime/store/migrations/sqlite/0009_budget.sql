-- Run states gain "budget" (stopped by a spending limit) and
-- "input_required" (parked for a human). SQLite cannot change a CHECK
-- constraint, so the runs table is rebuilt with the same columns, in the
-- same order (0001's, then 0007's model_served): a column added to runs by a
-- migration numbered before this one must be added here too, or the
-- INSERT below fails (it never drops data silently).
CREATE TABLE runs_new (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL DEFAULT 'spawn',
    child_key       TEXT NOT NULL,
    requester_key   TEXT NOT NULL,
    agent_id        TEXT NOT NULL,
    label           TEXT NOT NULL DEFAULT '',
    task            TEXT NOT NULL DEFAULT '',
    preset          TEXT NOT NULL DEFAULT '',
    model           TEXT NOT NULL DEFAULT '',
    thinking        TEXT NOT NULL DEFAULT '',
    cleanup         TEXT NOT NULL DEFAULT 'keep',
    timeout_ms      INTEGER NOT NULL DEFAULT 0,
    depth           INTEGER NOT NULL DEFAULT 1,
    role            TEXT NOT NULL DEFAULT 'leaf',
    state           TEXT NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued','running','ok','error','timeout','killed','unknown','budget','input_required')),
    note            TEXT NOT NULL DEFAULT '',
    result_text     TEXT NOT NULL DEFAULT '',
    result_json     TEXT,
    options         TEXT NOT NULL DEFAULT '{}',
    iterations      INTEGER NOT NULL DEFAULT 0,
    tool_calls      INTEGER NOT NULL DEFAULT 0,
    tokens_in       INTEGER NOT NULL DEFAULT 0,
    tokens_out      INTEGER NOT NULL DEFAULT 0,
    cost_usd        REAL NOT NULL DEFAULT 0,
    owner_pid       INTEGER NOT NULL DEFAULT 0,
    owner_instance  TEXT NOT NULL DEFAULT '',
    heartbeat_at    INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    ended_at        INTEGER,
    model_served    TEXT NOT NULL DEFAULT ''
);
INSERT INTO runs_new SELECT * FROM runs;
DROP TABLE runs;
ALTER TABLE runs_new RENAME TO runs;
CREATE INDEX runs_requester ON runs (requester_key, created_at);
CREATE INDEX runs_state     ON runs (state);
CREATE INDEX runs_child     ON runs (child_key);
CREATE INDEX runs_owner     ON runs (owner_instance, state);
CREATE INDEX runs_active_requester ON runs (requester_key, kind) WHERE state IN ('queued', 'running');

-- Spending recorded against budgets, per scope: run:<runId>,
-- tree:<top-level child session key>, day:<agentId>:<YYYY-MM-DD UTC>.
-- A tree's limits are those of the run that opened it (first writer wins),
-- so every descendant is bound by them.
CREATE TABLE budget_usage (
    scope        TEXT PRIMARY KEY,
    tokens       INTEGER NOT NULL DEFAULT 0,
    usd          REAL NOT NULL DEFAULT 0,
    limit_tokens INTEGER NOT NULL DEFAULT 0,
    limit_usd    REAL NOT NULL DEFAULT 0,
    updated_at   INTEGER NOT NULL
);
