-- The search index is filled at the end of each write transaction
-- (ftsindex.go), not by a trigger per INSERT: FTS5 writes its pending
-- entries out as a segment at every statement savepoint, and every INSERT
-- into messages opened one, so each append wrote a segment of its own.
DROP TRIGGER messages_fts_ai;
-- A message inserted and deleted (or changed) before its transaction's
-- end is not indexed yet: remove only entries that exist.
DROP TRIGGER messages_fts_ad;
DROP TRIGGER messages_fts_au_old;
DROP TRIGGER messages_fts_au_new;
CREATE TRIGGER messages_fts_ad AFTER DELETE ON messages
WHEN old.body != '' AND EXISTS (SELECT 1 FROM messages_fts_docsize WHERE id = old.id) BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
END;
CREATE TRIGGER messages_fts_au AFTER UPDATE OF body ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body)
        SELECT 'delete', old.id, old.body
        WHERE old.body != '' AND EXISTS (SELECT 1 FROM messages_fts_docsize WHERE id = old.id);
    INSERT INTO messages_fts (rowid, body) SELECT new.id, new.body WHERE new.body != '';
END;
