-- Health: each app's check, probe results (raw for an hour, plus the newest per target and prober), alerts, and
-- the remediation ladder's place per instance.

-- An app's check; no row means the default (GET /, any status below 500, every 10 s, 2 s time-out).
CREATE TABLE app_checks (
  app_id      bigint PRIMARY KEY REFERENCES apps(id) ON DELETE CASCADE,
  path        text NOT NULL,
  -- Expected status; null: any status below 500.
  status      integer,
  interval_ms integer NOT NULL,
  timeout_ms  integer NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Raw results, pruned after an hour. target: an instance id or a hostname; from_node: the runner or balancer.
CREATE TABLE health_results (
  id          bigserial PRIMARY KEY,
  app_id      bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  kind        text NOT NULL,
  target      text NOT NULL,
  from_node   text NOT NULL,
  ok          boolean NOT NULL,
  status      integer,
  latency_ms  double precision,
  error       text,
  at          timestamptz NOT NULL
);
CREATE INDEX health_results_app_idx ON health_results(app_id, at DESC);
CREATE INDEX health_results_at_idx ON health_results(at);

-- The newest result per target and prober, and since when the target has been healthy or not.
CREATE TABLE health_last (
  app_id      bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  kind        text NOT NULL,
  target      text NOT NULL,
  from_node   text NOT NULL,
  ok          boolean NOT NULL,
  status      integer,
  latency_ms  double precision,
  error       text,
  at          timestamptz NOT NULL,
  since       timestamptz NOT NULL,
  PRIMARY KEY (target, from_node)
);
CREATE INDEX health_last_app_idx ON health_last(app_id);

CREATE TABLE alerts (
  id          bigserial PRIMARY KEY,
  app_id      bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  instance    text,
  reason      text NOT NULL,
  since       timestamptz NOT NULL DEFAULT now(),
  cleared_at  timestamptz
);
CREATE INDEX alerts_app_idx ON alerts(app_id, cleared_at);
CREATE UNIQUE INDEX alerts_open_instance_idx ON alerts(instance) WHERE cleared_at IS NULL AND instance IS NOT NULL;

-- The remediation ladder: an instance taken out of rotation, the rung it is on and when it got there.
ALTER TABLE instances ADD COLUMN out_of_rotation boolean NOT NULL DEFAULT false;
ALTER TABLE instances ADD COLUMN remediation_rung integer NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN remediation_at timestamptz;

-- An app's own alert webhook (the platform's is config: nexus.alertWebhookUrl).
ALTER TABLE apps ADD COLUMN alert_webhook text;
