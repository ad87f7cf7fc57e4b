/**
 * Singleton process types (`pier ps:scale clock=1 --singleton`): the type runs at most once across the cluster,
 * fenced by a lease in `locks` named `singleton:<app>:<type>` whose holder is the instance id. The scheduler takes
 * the lease when it places the instance (and places none while someone holds it); the runner running it renews it
 * through the control protocol (`singleton.renew`) and stops the process before its lease can run out; the lease is
 * let go only when the runner reports the instance stopped, or by expiry — never when a silent runner's instance is
 * forgotten, so its replacement starts only after the old one's lease is over.
 */
import { PierError } from '../core/errors.js';
import { acquireLock, getLock, releaseLock, renewLock } from './locks.js';
import type { Queryable } from './pool.js';

export function singletonLockName(app: string, type: string): string {
  return `singleton:${app}:${type}`;
}

/** Per app id: its singleton types. */
export async function loadSingletonTypes(q: Queryable): Promise<Map<number, string[]>> {
  const { rows } = await q.query<{ app_id: number; process_type: string }>('SELECT app_id, process_type FROM formation WHERE singleton');
  const byApp = new Map<number, string[]>();
  for (const row of rows) byApp.set(Number(row.app_id), [...(byApp.get(Number(row.app_id)) ?? []), row.process_type]);
  return byApp;
}

/** Whether `instanceId`'s type is a singleton of its app. */
export async function isSingletonInstance(q: Queryable, instanceId: string): Promise<boolean> {
  const { rows } = await q.query(
    'SELECT 1 FROM instances i JOIN formation f ON f.app_id = i.app_id AND f.process_type = i.process_type WHERE i.id = $1 AND f.singleton',
    [instanceId],
  );
  return rows.length > 0;
}

/** Whether the type's lease is held now (an expired one is free). */
export async function isSingletonHeld(q: Queryable, app: string, type: string): Promise<boolean> {
  return (await getLock(q, singletonLockName(app, type))) !== undefined;
}

/** Takes the type's lease for the instance just placed (the caller checked it was free, under the scheduling lock). */
export async function claimSingleton(tx: Queryable, app: string, type: string, instanceId: string, leaseMs: number): Promise<void> {
  await acquireLock(tx, singletonLockName(app, type), instanceId, leaseMs);
}

/**
 * Renews the lease of the runner's singleton instance. @throws PIER_FENCED when the instance is no longer this
 * runner's, or its lease is gone or someone else's (the runner must then have stopped the process).
 */
export async function renewSingleton(tx: Queryable, nodeId: string, instanceId: string, leaseMs: number): Promise<{ token: number; leaseMs: number }> {
  const { rows } = await tx.query<{ app: string; process_type: string }>(
    `SELECT a.name AS app, i.process_type FROM instances i JOIN apps a ON a.id = i.app_id
     WHERE i.id = $1 AND i.runner_id = $2`,
    [instanceId, nodeId],
  );
  const row = rows[0];
  // A stopping instance still renews: its process runs until the runner reports it stopped (then the lease is let go).
  if (!row) throw new PierError('PIER_FENCED', `instance ${instanceId} is no longer assigned to ${nodeId}; stop it`);
  const name = singletonLockName(row.app, row.process_type);
  const held = await getLock(tx, name);
  if (held?.holder !== instanceId) throw new PierError('PIER_FENCED', `the lease '${name}' is ${held ? `held by ${held.holder}` : 'no longer held'}; stop the process`);
  const renewed = await renewLock(tx, name, held.token, leaseMs);
  return { token: renewed.token, leaseMs };
}

/** The runner reported the instance stopped: its lease (if it held one) is let go at once. */
export async function releaseSingletonOf(tx: Queryable, instanceId: string): Promise<void> {
  const { rows } = await tx.query<{ name: string; token: string }>("SELECT name, token FROM locks WHERE holder = $1 AND name LIKE 'singleton:%'", [instanceId]);
  for (const row of rows) await releaseLock(tx, row.name, Number(row.token));
}
