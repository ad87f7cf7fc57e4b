-- Process types (Procfile workers). What an artifact runs is a property of its bytes (its Procfile), so it is
-- recorded on the artifact at upload: every release of those bytes (a rollback, a config change) runs the same
-- types. NULL (artifacts from before this migration) means a web app only.
ALTER TABLE artifacts ADD COLUMN processes jsonb;          -- background type -> command, e.g. {"worker": "python worker.py"}
ALTER TABLE artifacts ADD COLUMN has_web boolean NOT NULL DEFAULT true;

-- Desired count of each background type (Heroku's formation); the web count stays apps.web_scale. One owner:
-- src/db/formation.ts. A type with no row runs 0 instances.
CREATE TABLE formation (
  app_id       bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  process_type text NOT NULL,
  quantity     integer NOT NULL CHECK (quantity BETWEEN 0 AND 100),
  -- Runs once across the cluster, fenced by a lease (see formation.ts); quantity is then 0 or 1.
  singleton    boolean NOT NULL DEFAULT false,
  PRIMARY KEY (app_id, process_type)
);

-- Per-app, per-type process name (web.1, worker.2) that logs, `pier ps` and `ps:stop` use.
ALTER TABLE instances ADD COLUMN process_name text;
