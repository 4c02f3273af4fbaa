-- SQLite's 0017 brings the insert trigger back for the messages of older
-- releases' processes (0015 moved indexing to the end of each transaction).
-- PostgreSQL's INSERT carries its search vector: nothing changes here; the
-- migration keeps both backends' schema versions in step.
SELECT 1;
