/** A consistent picture of the state and the event version it corresponds to. */
import type pg from 'pg';
import type { NodeLiveness } from '../core/liveness.js';
import type { Snapshot } from '../protocol/index.js';
import { listAllApps } from './apps.js';
import { currentVersion } from './events.js';
import { listInstances } from './instances.js';
import { listNodes } from './nodes.js';
import { listAppChecks } from './health.js';
import { withTransaction } from './pool.js';

/**
 * Reads in one REPEATABLE READ transaction. Events commit in id order (see appendEvent), so the newest visible
 * event id is exactly the version of the state this transaction sees.
 */
export function takeSnapshot(pool: pg.Pool, liveness: NodeLiveness): Promise<Snapshot> {
  return withTransaction(
    pool,
    async (tx) => ({
      version: await currentVersion(tx), apps: await listAllApps(tx), nodes: await listNodes(tx, liveness), instances: await listInstances(tx),
      checks: await listAppChecks(tx),
    }),
    'repeatable read only',
  );
}
