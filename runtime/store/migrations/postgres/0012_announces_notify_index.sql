-- Announces a requester has not been notified of: PollAnnounces counts and
-- claims them per requester on every poll, and the only partial index
-- (announces_pending) covers delivered_at, so each poll scanned the table.
CREATE INDEX announces_unnotified ON announces (requester_key) WHERE notified_at IS NULL;
