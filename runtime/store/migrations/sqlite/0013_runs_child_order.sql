-- session_status reads a session's newest active run and newest run
-- (Store.SessionRuns: ORDER BY created_at DESC, id DESC LIMIT 1). With
-- runs_child on child_key alone each read sorted every run of the session
-- (a long-lived session's sends, one run each) in a temporary b-tree; in
-- this order the newest is the index's last entry.
DROP INDEX runs_child;
CREATE INDEX runs_child ON runs (child_key, created_at, id);
