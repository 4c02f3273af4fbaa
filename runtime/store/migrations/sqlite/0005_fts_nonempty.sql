-- Index only messages that have text: tool calls and tool results carry
-- none (IndexText), and an FTS insert per such row is pure cost.
DROP TRIGGER messages_fts_ai;
DROP TRIGGER messages_fts_ad;
DROP TRIGGER messages_fts_au;
DELETE FROM messages_fts;
INSERT INTO messages_fts (rowid, body) SELECT id, body FROM messages WHERE body != '';
CREATE TRIGGER messages_fts_ai AFTER INSERT ON messages WHEN new.body != '' BEGIN
    INSERT INTO messages_fts (rowid, body) VALUES (new.id, new.body);
END;
CREATE TRIGGER messages_fts_ad AFTER DELETE ON messages WHEN old.body != '' BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
END;
CREATE TRIGGER messages_fts_au_old AFTER UPDATE OF body ON messages WHEN old.body != '' BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
END;
CREATE TRIGGER messages_fts_au_new AFTER UPDATE OF body ON messages WHEN new.body != '' BEGIN
    INSERT INTO messages_fts (rowid, body) VALUES (new.id, new.body);
END;
