-- Per-app limits an operator set (memoryMb, processes, openFiles, cpuShares, requestTimeoutMs); a key left out means
-- the runner's default. Read into each instance's spec, so a change applies to the instances started after it.
ALTER TABLE apps ADD COLUMN limits jsonb NOT NULL DEFAULT '{}'::jsonb;
