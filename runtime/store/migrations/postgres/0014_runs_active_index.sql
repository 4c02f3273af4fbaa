-- A run's row had six indexes; each insert and each change of state
-- rewrote a page of every one (runs_state: the old state's entry and the
-- new one's; runs_owner: the same under the owner), in the spawn's and
-- the finish's transactions. What they served reads only active runs:
-- the heartbeat (this instance's running runs), recovery (other
-- instances' queued and running runs), the list of active runs. The
-- partial index on active runs (runs_active_requester, 0004) holds just
-- those, so those reads scan it (they name state IN ('queued','running')
-- to use it) and the two full indexes go.
DROP INDEX runs_state;
DROP INDEX runs_owner;
