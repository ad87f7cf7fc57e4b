-- Pier's initial schema: owners, apps, hostnames, config vars, releases and artifacts, nodes,
-- events (gapless ids assigned under an advisory lock), locks, and remembered mutation requests.

CREATE TABLE owners (
  id          bigserial PRIMARY KEY,
  name        text NOT NULL UNIQUE,
  token_hash  text NOT NULL UNIQUE,          -- sha256 of the API token; the token itself is never stored
  is_admin    boolean NOT NULL DEFAULT false,
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE apps (
  id          bigserial PRIMARY KEY,
  name        text NOT NULL UNIQUE,
  owner_id    bigint NOT NULL REFERENCES owners(id) ON DELETE RESTRICT,
  web_scale   integer NOT NULL DEFAULT 1 CHECK (web_scale >= 0),
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX apps_owner_idx ON apps(owner_id);

CREATE TABLE hostnames (
  hostname    text PRIMARY KEY,
  app_id      bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX hostnames_app_idx ON hostnames(app_id);

CREATE TABLE config_vars (
  app_id      bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  key         text NOT NULL,
  value       text NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (app_id, key)
);

-- Release artifacts, stored once per content hash.
CREATE TABLE artifacts (
  sha256      text PRIMARY KEY,
  size_bytes  bigint NOT NULL,
  bytes       bytea NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE releases (
  id          bigserial PRIMARY KEY,
  app_id      bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  version     integer NOT NULL,
  sha256      text NOT NULL REFERENCES artifacts(sha256),
  created_by  bigint REFERENCES owners(id) ON DELETE SET NULL,
  status      text NOT NULL DEFAULT 'uploaded',
  created_at  timestamptz NOT NULL DEFAULT now(),
  UNIQUE (app_id, version)
);

CREATE TABLE nodes (
  id                 text PRIMARY KEY,
  kind               text NOT NULL,
  address            text NOT NULL,
  status             text NOT NULL DEFAULT 'alive',
  info               jsonb NOT NULL DEFAULT '{}',
  registered_at      timestamptz NOT NULL DEFAULT now(),
  last_heartbeat_at  timestamptz,
  -- Backend pid of a nexus's leader-lock session; the leader is the row whose pid holds the lock.
  leader_pid         integer
);

-- Every state change, in commit order. Ids are assigned max(id)+1 while holding a transaction-level
-- advisory lock, so they are gapless and commit in order: a subscriber that sees N then N+2 missed N+1.
CREATE TABLE events (
  id          bigint PRIMARY KEY,
  type        text NOT NULL,
  app         text,
  data        jsonb NOT NULL DEFAULT '{}',
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- Leases with fencing tokens (used by deploys).
CREATE TABLE locks (
  name        text PRIMARY KEY,
  holder      text NOT NULL,
  token       bigint NOT NULL,
  expires_at  timestamptz NOT NULL
);
CREATE SEQUENCE lock_tokens;

-- Mutations remembered by request id, so a retried request is answered with its first result.
CREATE TABLE requests (
  id          text PRIMARY KEY,
  type        text NOT NULL,
  reply       jsonb,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX requests_created_idx ON requests(created_at);
