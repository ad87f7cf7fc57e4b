/** The nexus's answer to the runners' add-on commands: their assignments, and their reports on each server. */
import type pg from 'pg';
import { redisAssignments, reportRedisAddon, runOnce } from '../db/index.js';
import type { HandlerMap } from '../transport/index.js';

export interface AddonHandlerContext {
  pool: pg.Pool;
  /** Called after a report changed an add-on (wakes the placer on the leader: a failed start is placed again). */
  onReport?: () => void;
}

export function addonHandlers(ctx: AddonHandlerContext): HandlerMap {
  const { pool } = ctx;
  return {
    // The node id is the caller's own (the control server checks it against the caller's key).
    'addons.assigned': async (r) => ({ addons: await redisAssignments(pool, r.nodeId) }),
    'addon.report': async (r) => {
      const applied = await runOnce(pool, r.id, r.type, (tx) => reportRedisAddon(tx, r.nodeId, r.name, r.generation, r.state, r.note));
      if (applied) ctx.onReport?.();
      return { applied };
    },
  };
}
