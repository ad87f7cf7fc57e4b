-- Releases deployed as instances on runners. An app has a target release (what the scheduler places) and a
-- live release (what the balancer routes to); they differ while a deploy is starting the new instances.

ALTER TABLE apps ADD COLUMN release_id bigint REFERENCES releases(id) ON DELETE SET NULL;
ALTER TABLE apps ADD COLUMN live_release_id bigint REFERENCES releases(id) ON DELETE SET NULL;
-- A release is an artifact plus the config vars it runs with (as Heroku: a config change is a new release).
-- status: pending (target, instances starting) → live → superseded; or failed (with error).
ALTER TABLE releases ADD COLUMN config jsonb NOT NULL DEFAULT '{}';
ALTER TABLE releases ADD COLUMN description text NOT NULL DEFAULT '';
ALTER TABLE releases ADD COLUMN error text;
ALTER TABLE releases ALTER COLUMN status SET DEFAULT 'pending';

CREATE TABLE instances (
  id           text PRIMARY KEY,
  app_id       bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  release_id   bigint NOT NULL REFERENCES releases(id) ON DELETE CASCADE,
  runner_id    text NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
  process_type text NOT NULL DEFAULT 'web',
  -- assigned → starting → ready; any → failed; stopping → (row deleted when the runner reports stopped)
  state        text NOT NULL DEFAULT 'assigned',
  port         integer,
  error        text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX instances_app_idx ON instances(app_id);
CREATE INDEX instances_runner_idx ON instances(runner_id);
