-- One-off processes (`pier run`): `run.N` per app, the command and terminal it runs with, where it runs and how it
-- ended. A row is 'created' by POST /v1/apps/:app/dynos, 'starting' once a nexus sends it to a runner (an attached
-- one-off starts when its client attaches, on whichever nexus holds that connection), 'running', then 'exited'.
CREATE TABLE one_offs (
  id          text PRIMARY KEY,
  app_id      bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  number      integer NOT NULL,
  spec        jsonb NOT NULL,
  detach      boolean NOT NULL,
  runner_id   text,
  nexus_id    text,
  state       text NOT NULL DEFAULT 'created' CHECK (state IN ('created', 'starting', 'running', 'exited')),
  created_at  timestamptz NOT NULL DEFAULT now(),
  started_at  timestamptz,
  ended_at    timestamptz,
  exit_code   integer,
  UNIQUE (app_id, number)
);
CREATE INDEX one_offs_live_idx ON one_offs(app_id) WHERE state <> 'exited';
