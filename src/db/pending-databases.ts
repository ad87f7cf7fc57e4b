/**
 * Add-on databases being made (migration 0017): recorded before they exist, forgotten once their add-on's row is
 * committed or they are dropped again, so one left by a nexus killed midway is found and dropped.
 */
import type { Queryable } from './pool.js';

export async function recordPendingDatabase(q: Queryable, name: string, addonName: string): Promise<void> {
  await q.query('INSERT INTO addon_pending_databases (name, addon_name) VALUES ($1, $2)', [name, addonName]);
}

export async function forgetPendingDatabase(q: Queryable, name: string): Promise<void> {
  await q.query('DELETE FROM addon_pending_databases WHERE name = $1', [name]);
}

/**
 * Pending databases older than `olderThanMs` that no add-on records: what a create that died midway left. (A create
 * in flight is younger; a recorded one was forgotten in its add-on's transaction.)
 */
export async function stalePendingDatabases(q: Queryable, olderThanMs: number): Promise<Array<{ name: string; addonName: string }>> {
  const { rows } = await q.query<{ name: string; addon_name: string }>(
    `SELECT p.name, p.addon_name FROM addon_pending_databases p
     WHERE p.created_at < now() - ($1 || ' milliseconds')::interval
       AND NOT EXISTS (SELECT 1 FROM addons a WHERE a.kind = 'postgresql' AND a.plan->>'database' = p.name)
     ORDER BY p.created_at`,
    [String(olderThanMs)],
  );
  return rows.map((r) => ({ name: r.name, addonName: r.addon_name }));
}
