-- The release phase (the Procfile's release: command) of a release: 'pending' until its one task (an instance of
-- process type 'release') exits 0 ('done') or fails ('failed'); NULL when the release has none to run (no
-- release: line, or a rollback, which does not run it again).
ALTER TABLE releases ADD COLUMN release_phase text CHECK (release_phase IN ('pending', 'done', 'failed'));
