-- max_children_per_agent counted every spawn: CreateRun's transaction
-- scanned the requester's active runs (runs_active_requester), up to the
-- hundreds of queued children of a wide fan-out, on every spawn. The
-- count is kept instead, one row per requester, by a trigger on runs: every
-- path that inserts a run or moves it in or out of queued/running (create,
-- claim, finish, kill, park, requeue, recovery, whatever comes later) keeps
-- it exact, in the transaction that changes the run. Only spawns count.
CREATE TABLE run_children (
    requester_key TEXT PRIMARY KEY,
    active        BIGINT NOT NULL DEFAULT 0
);
INSERT INTO run_children (requester_key, active)
    SELECT requester_key, count(*) FROM runs
    WHERE kind = 'spawn' AND state IN ('queued', 'running') GROUP BY requester_key;
CREATE FUNCTION run_children_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    was BOOLEAN := TG_OP <> 'INSERT' AND OLD.kind = 'spawn' AND OLD.state IN ('queued', 'running');
    is_ BOOLEAN := TG_OP <> 'DELETE' AND NEW.kind = 'spawn' AND NEW.state IN ('queued', 'running');
BEGIN
    IF TG_OP = 'UPDATE' AND was = is_ AND OLD.requester_key = NEW.requester_key THEN
        RETURN NULL;
    END IF;
    IF was THEN
        UPDATE run_children SET active = active - 1 WHERE requester_key = OLD.requester_key;
    END IF;
    IF is_ THEN
        INSERT INTO run_children (requester_key, active) VALUES (NEW.requester_key, 1)
            ON CONFLICT (requester_key) DO UPDATE SET active = run_children.active + 1;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER run_children_count AFTER INSERT OR DELETE OR UPDATE OF state, kind, requester_key ON runs
    FOR EACH ROW EXECUTE FUNCTION run_children_count();
