-- The deploy verdict: for a window after a release goes live, the previous live release's instances are kept
-- (not drained) and the leader compares the two releases' live traffic; a clearly worse new release is switched
-- back at once. verdict_until is null when no verdict is pending.
ALTER TABLE apps ADD COLUMN verdict_previous_id bigint REFERENCES releases(id) ON DELETE SET NULL;
ALTER TABLE apps ADD COLUMN verdict_since timestamptz;
ALTER TABLE apps ADD COLUMN verdict_until timestamptz;
