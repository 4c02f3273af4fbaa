-- SQLite's 0015 moves its full-text indexing from an insert trigger to the
-- end of each write transaction. PostgreSQL's INSERT of a message carries
-- its search vector (the tsv column) already: nothing changes here; the
-- migration keeps both backends' schema versions in step.
SELECT 1;
