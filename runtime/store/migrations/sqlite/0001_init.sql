-- sessions: one row per session key. message_count doubles as the last seq.
CREATE TABLE sessions (
    key           TEXT PRIMARY KEY,
    session_id    TEXT NOT NULL UNIQUE,
    agent_id      TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('main','subagent','cron','other')),
    label         TEXT NOT NULL DEFAULT '',
    parent_key    TEXT,
    spawned_by    TEXT NOT NULL DEFAULT '',
    depth         INTEGER NOT NULL DEFAULT 0,
    model         TEXT NOT NULL DEFAULT '',
    thinking      TEXT NOT NULL DEFAULT '',
    preset        TEXT NOT NULL DEFAULT '',
    status        TEXT NOT NULL DEFAULT 'idle',
    message_count INTEGER NOT NULL DEFAULT 0,
    tokens_in     INTEGER NOT NULL DEFAULT 0,
    tokens_out    INTEGER NOT NULL DEFAULT 0,
    cost_usd      REAL NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    archived_at   INTEGER
);
CREATE INDEX sessions_agent   ON sessions (agent_id);
CREATE INDEX sessions_parent  ON sessions (parent_key);
CREATE INDEX sessions_updated ON sessions (updated_at DESC);

-- messages: the transcript, ordered by the per-session seq, never by time.
CREATE TABLE messages (
    id          INTEGER PRIMARY KEY,
    session_key TEXT NOT NULL REFERENCES sessions (key) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('system','user','assistant','tool')),
    content     TEXT NOT NULL,            -- JSON: {"text", "tool_calls", "tool_results"}
    body        TEXT NOT NULL DEFAULT '', -- plain text, indexed by messages_fts
    trust       TEXT NOT NULL CHECK (trust IN ('control_trusted','user_owned','model_generated','external_untrusted','inter_session')),
    tokens_in   INTEGER NOT NULL DEFAULT 0,
    tokens_out  INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    UNIQUE (session_key, seq)
);

CREATE VIRTUAL TABLE messages_fts USING fts5 (
    body,
    content = 'messages',
    content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER messages_fts_ai AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, body) VALUES (new.id, new.body);
END;
CREATE TRIGGER messages_fts_ad AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
END;
CREATE TRIGGER messages_fts_au AFTER UPDATE OF body ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
    INSERT INTO messages_fts (rowid, body) VALUES (new.id, new.body);
END;

-- runs: the one run registry (spawned children, sends, cron turns).
CREATE TABLE runs (
    id              TEXT PRIMARY KEY,          -- uuid v7
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
                    CHECK (state IN ('queued','running','ok','error','timeout','killed','unknown')),
    note            TEXT NOT NULL DEFAULT '',
    result_text     TEXT NOT NULL DEFAULT '',
    result_json     TEXT,
    options         TEXT NOT NULL DEFAULT '{}', -- JSON of the spawn options
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
    ended_at        INTEGER
);
CREATE INDEX runs_requester ON runs (requester_key, created_at);
CREATE INDEX runs_state     ON runs (state);
CREATE INDEX runs_child     ON runs (child_key);

-- announces: durable completion notices, delivered exactly once.
CREATE TABLE announces (
    id            INTEGER PRIMARY KEY,
    run_id        TEXT NOT NULL UNIQUE,
    requester_key TEXT NOT NULL,
    status        TEXT NOT NULL,
    body          TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    delivered_at  INTEGER
);
CREATE INDEX announces_pending ON announces (requester_key) WHERE delivered_at IS NULL;

-- cron jobs and task lists: filled by their issues.
CREATE TABLE cron_jobs (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    schedule    TEXT NOT NULL,
    payload     TEXT NOT NULL,
    creator_key TEXT NOT NULL,
    enabled     INTEGER NOT NULL DEFAULT 1,
    next_run_at INTEGER,
    last_run_at INTEGER,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE TABLE task_lists (
    name        TEXT PRIMARY KEY,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE tasks (
    id          INTEGER PRIMARY KEY,
    list        TEXT NOT NULL REFERENCES task_lists (name) ON DELETE CASCADE,
    title       TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending','in_progress','completed')),
    owner       TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE TABLE task_events (
    id         INTEGER PRIMARY KEY,
    task_id    INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    actor      TEXT NOT NULL,
    change     TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
