-- Request aggregates per app and minute, written by the stats collectors. Each collector adds the counts it saw
-- (several collectors share the traffic; each flushes the current minute every few seconds), so the latency
-- histogram is stored too: fixed logarithmic buckets add up exactly, and p50/p95/p99 are recomputed from it.
-- Keyed by app name, not id: collectors never read the apps table (they work while the database is away), and
-- the API shows an app only the minutes since it was created, so a recreated name does not inherit old rows.
CREATE TABLE request_stats (
  app        text NOT NULL,
  minute     timestamptz NOT NULL,
  requests   bigint NOT NULL DEFAULT 0,
  s2xx       bigint NOT NULL DEFAULT 0,
  s3xx       bigint NOT NULL DEFAULT 0,
  s4xx       bigint NOT NULL DEFAULT 0,
  s5xx       bigint NOT NULL DEFAULT 0,
  bytes      bigint NOT NULL DEFAULT 0,
  p50_ms     double precision,
  p95_ms     double precision,
  p99_ms     double precision,
  -- request counts per latency bucket (see src/stats/histogram.ts)
  histogram  integer[] NOT NULL DEFAULT '{}',
  PRIMARY KEY (app, minute)
);
CREATE INDEX request_stats_minute_idx ON request_stats (minute);
