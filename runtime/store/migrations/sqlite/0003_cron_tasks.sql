-- cron jobs: the schedule's time zone (cron expressions are read in it),
-- the last run this job started, a note on its last occurrence (a fire that
-- failed, or one skipped because the previous run was still active), and
-- how many runs it started.
ALTER TABLE cron_jobs ADD COLUMN timezone TEXT NOT NULL DEFAULT 'UTC';
ALTER TABLE cron_jobs ADD COLUMN last_run_id TEXT NOT NULL DEFAULT '';
ALTER TABLE cron_jobs ADD COLUMN last_note TEXT NOT NULL DEFAULT '';
ALTER TABLE cron_jobs ADD COLUMN run_count INTEGER NOT NULL DEFAULT 0;
-- the scheduler's poll (due jobs) and cron list (a creator's jobs).
CREATE INDEX cron_jobs_due     ON cron_jobs (next_run_at) WHERE enabled = 1;
CREATE INDEX cron_jobs_creator ON cron_jobs (creator_key);
-- task lists: a list's tasks by status, a task's history in order.
CREATE INDEX tasks_list        ON tasks (list, status);
CREATE INDEX task_events_task  ON task_events (task_id, id);
