-- What a starting server needs to find the processes of a run that a dead server left
-- running (see RunProcesses in oneoff-core): written when the run starts, read by recovery.
ALTER TABLE runs ADD COLUMN cgroup TEXT;
ALTER TABLE runs ADD COLUMN process_group INTEGER;
ALTER TABLE runs ADD COLUMN leader_start_ticks INTEGER;
ALTER TABLE runs ADD COLUMN boot_id TEXT;
