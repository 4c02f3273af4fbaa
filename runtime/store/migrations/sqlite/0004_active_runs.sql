-- Active runs per requester: max_children_per_agent is checked on every
-- spawn, and must not scan the requester's whole run history.
CREATE INDEX runs_active_requester ON runs (requester_key, kind) WHERE state IN ('queued', 'running');
