-- The model a provider says answered (its response's model string), beside
-- the model requested: the last one seen in a run, and in a session.
ALTER TABLE runs ADD COLUMN model_served TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN model_served TEXT NOT NULL DEFAULT '';
