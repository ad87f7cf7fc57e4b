-- No secret stays in the idempotency store (#10, attack 11): replies remembered before this migration lose the
-- owner tokens and config values they held. Retries of those requests are answered without them (see
-- src/db/requests.ts OnceOptions), exactly as for requests remembered from now on.

UPDATE requests SET reply = reply - 'token'
 WHERE type = 'owner.create' AND jsonb_typeof(reply) = 'object' AND reply ? 'token';

UPDATE requests SET reply = NULL
 WHERE type IN ('config.change', 'config.set', 'config.unset') AND reply IS NOT NULL;
