-- 0015 moved full-text indexing from an insert trigger to the end of each
-- write transaction (ftsindex.go). A process of an older release sharing
-- the file (one still running while another was upgraded) inserts
-- messages without a word of it, and they were never indexed. The insert
-- trigger is back for exactly those rows: this release's INSERTs say
-- fts_deferred = 1 (their transaction indexes them before it commits), an
-- older release's INSERT does not name the column and gets 0, which the
-- trigger indexes at once, as that release expects. A trigger whose WHEN
-- is false leaves FTS5 out of the statement, so this release's appends
-- still write one index segment per transaction.
ALTER TABLE messages ADD COLUMN fts_deferred INTEGER NOT NULL DEFAULT 0;
CREATE TRIGGER messages_fts_ai AFTER INSERT ON messages
WHEN new.body != '' AND new.fts_deferred = 0 BEGIN
    INSERT INTO messages_fts (rowid, body) VALUES (new.id, new.body);
END;
