-- Add-ons (Heroku's `addons`): a PostgreSQL database or a Redis server attached to one app, reaching it as a config
-- var (DATABASE_URL, REDIS_URL). One owner of the rows: src/db/addons.ts (Redis placement: src/db/addon-placements.ts).
--
-- An add-on outlives its app's row only to be dropped: destroying the app sets app_id NULL and state 'destroying',
-- and whoever drops the database and role (or stops the server) deletes the row; the leader retries any left.
CREATE TABLE addons (
  id          bigserial PRIMARY KEY,
  -- What `addons:info NAME` takes, e.g. 'postgresql-amber-4821'; unique across the platform, as on Heroku.
  name        text NOT NULL UNIQUE,
  app_id      bigint REFERENCES apps(id) ON DELETE SET NULL,
  app_name    text NOT NULL,
  kind        text NOT NULL CHECK (kind IN ('postgresql', 'redis')),
  state       text NOT NULL CHECK (state IN ('provisioning', 'ready', 'moving', 'destroying')),
  -- The config var it sets on its app.
  config_var  text NOT NULL,
  -- The kind's own facts: postgresql {server, database, role, connectionLimit}; redis {maxmemoryMb}. No secret.
  plan        jsonb NOT NULL DEFAULT '{}',
  -- Its password (the app holds it too, inside its config var).
  secret      text NOT NULL,
  -- Redis: where it runs now (runner, address, port), and a generation bumped at each placement, so a runner
  -- refuses an older assignment than one it has applied.
  runner_id   text,
  host        text,
  port        integer,
  generation  integer NOT NULL DEFAULT 0,
  -- Redis: when it last (re)started empty and why ('created', 'runner lost', …), for `addons:info`.
  started_at  timestamptz,
  note        text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
-- One add-on of each kind per app.
CREATE UNIQUE INDEX addons_app_kind_idx ON addons(app_id, kind) WHERE app_id IS NOT NULL;
CREATE INDEX addons_destroying_idx ON addons(state) WHERE state = 'destroying';
CREATE INDEX addons_runner_idx ON addons(runner_id) WHERE runner_id IS NOT NULL;
