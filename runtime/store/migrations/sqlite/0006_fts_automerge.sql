-- Merge FTS5 segments less eagerly at write time (default 4): appends spent
-- over half their time merging; queries touch slightly more segments.
INSERT INTO messages_fts (messages_fts, rank) VALUES ('automerge', 8);
