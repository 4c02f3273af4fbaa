-- max_children_per_agent counted every spawn: CreateRun's transaction
-- scanned the requester's active runs (runs_active_requester), up to the
-- hundreds of queued children of a wide fan-out, on every spawn. The
-- count is kept instead, one row per requester, by triggers on runs: every
-- path that inserts a run or moves it in or out of queued/running (create,
-- claim, finish, kill, park, requeue, recovery, whatever comes later) keeps
-- it exact, in the transaction that changes the run. Only spawns count.
CREATE TABLE run_children (
    requester_key TEXT PRIMARY KEY,
    active        INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
INSERT INTO run_children (requester_key, active)
    SELECT requester_key, count(*) FROM runs
    WHERE kind = 'spawn' AND state IN ('queued', 'running') GROUP BY requester_key;
CREATE TRIGGER run_children_insert AFTER INSERT ON runs
    WHEN NEW.kind = 'spawn' AND NEW.state IN ('queued', 'running')
BEGIN
    INSERT INTO run_children (requester_key, active) VALUES (NEW.requester_key, 1)
        ON CONFLICT (requester_key) DO UPDATE SET active = active + 1;
END;
CREATE TRIGGER run_children_update AFTER UPDATE OF state, kind, requester_key ON runs
    WHEN (OLD.kind = 'spawn' AND OLD.state IN ('queued', 'running')) != (NEW.kind = 'spawn' AND NEW.state IN ('queued', 'running'))
      OR (OLD.kind = 'spawn' AND OLD.state IN ('queued', 'running') AND OLD.requester_key != NEW.requester_key)
BEGIN
    UPDATE run_children SET active = active - 1
        WHERE requester_key = OLD.requester_key AND OLD.kind = 'spawn' AND OLD.state IN ('queued', 'running');
    INSERT INTO run_children (requester_key, active)
        SELECT NEW.requester_key, 1 WHERE NEW.kind = 'spawn' AND NEW.state IN ('queued', 'running')
        ON CONFLICT (requester_key) DO UPDATE SET active = active + 1;
END;
CREATE TRIGGER run_children_delete AFTER DELETE ON runs
    WHEN OLD.kind = 'spawn' AND OLD.state IN ('queued', 'running')
BEGIN
    UPDATE run_children SET active = active - 1 WHERE requester_key = OLD.requester_key;
END;
