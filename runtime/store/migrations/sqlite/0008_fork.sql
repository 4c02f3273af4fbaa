-- A forked session records where its transcript was copied from: the
-- source session and the last seq copied.
ALTER TABLE sessions ADD COLUMN forked_from TEXT;
ALTER TABLE sessions ADD COLUMN forked_at_seq INTEGER NOT NULL DEFAULT 0;
