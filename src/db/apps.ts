/** Apps: create, list, look up within an owner's scope, destroy. */
import { ConflictError, NotFoundError } from '../core/errors.js';
import type { App } from '../protocol/index.js';
import { markAppAddonsDestroying } from './addons.js';
import { appendEvent } from './events.js';
import type { Principal } from './owners.js';
import { isUniqueViolation, type Queryable } from './pool.js';

/** An app row as the domain functions use it. */
export interface AppRef {
  id: number;
  name: string;
}

const APP_SELECT = `
  SELECT a.id, a.name, o.name AS owner, a.web_scale, a.created_at,
         coalesce(array_agg(h.hostname ORDER BY h.hostname) FILTER (WHERE h.hostname IS NOT NULL), '{}') AS hostnames
  FROM apps a JOIN owners o ON o.id = a.owner_id LEFT JOIN hostnames h ON h.app_id = a.id`;

type AppRow = { id: number; name: string; owner: string; web_scale: number; created_at: Date; hostnames: string[] };

function toApp(row: AppRow): App {
  return { name: row.name, owner: row.owner, webScale: row.web_scale, hostnames: row.hostnames, createdAt: row.created_at.getTime() };
}

/**
 * Finds an app the principal may see. Another owner's app is reported exactly like a missing one (404), so
 * names of other owners' apps do not leak. `forUpdate` locks the row for the rest of the transaction.
 */
export async function resolveApp(q: Queryable, principal: Principal, name: string, forUpdate = false): Promise<AppRef> {
  const { rows } = await q.query<{ id: number; name: string; owner_id: number }>(
    `SELECT id, name, owner_id FROM apps WHERE name = $1${forUpdate ? ' FOR UPDATE' : ''}`,
    [name],
  );
  const row = rows[0];
  if (!row || (row.owner_id !== principal.ownerId && !principal.isAdmin)) {
    throw new NotFoundError(`app '${name}' not found; run 'pier apps' to list your apps`);
  }
  return { id: row.id, name: row.name };
}

export async function getApp(q: Queryable, ref: AppRef): Promise<App> {
  const { rows } = await q.query<AppRow>(`${APP_SELECT} WHERE a.id = $1 GROUP BY a.id, o.name`, [ref.id]);
  if (!rows[0]) throw new NotFoundError(`app '${ref.name}' not found`);
  return toApp(rows[0]);
}

/** The principal's apps (an admin sees every app). */
export async function listApps(q: Queryable, principal: Principal): Promise<App[]> {
  const { rows } = principal.isAdmin
    ? await q.query<AppRow>(`${APP_SELECT} GROUP BY a.id, o.name ORDER BY a.name`)
    : await q.query<AppRow>(`${APP_SELECT} WHERE a.owner_id = $1 GROUP BY a.id, o.name ORDER BY a.name`, [principal.ownerId]);
  return rows.map(toApp);
}

/** Every app, for snapshots. */
export async function listAllApps(q: Queryable): Promise<App[]> {
  const { rows } = await q.query<AppRow>(`${APP_SELECT} GROUP BY a.id, o.name ORDER BY a.name`);
  return rows.map(toApp);
}

export async function createApp(tx: Queryable, principal: Principal, name: string): Promise<App> {
  try {
    const { rows } = await tx.query<{ id: number }>('INSERT INTO apps (name, owner_id) VALUES ($1, $2) RETURNING id', [name, principal.ownerId]);
    await appendEvent(tx, 'app.created', name, { owner: principal.name });
    return getApp(tx, { id: rows[0]!.id, name });
  } catch (err) {
    if (isUniqueViolation(err, 'apps_name_key')) throw new ConflictError(`app name '${name}' is taken; choose another name`);
    throw err;
  }
}

/**
 * Destroys an app and everything of it, so whoever creates the name next starts empty: its row (releases, config
 * vars, hostnames and instances go with it), its request aggregates and deploy lock (both keyed by name), and the
 * artifacts no other release uses. Runners and collectors purge their side on the `app.destroyed` event.
 */
export async function destroyApp(tx: Queryable, principal: Principal, name: string): Promise<void> {
  const ref = await resolveApp(tx, principal, name, true);
  const { rows } = await tx.query<{ sha256: string }>('SELECT DISTINCT sha256 FROM releases WHERE app_id = $1', [ref.id]);
  // Its add-ons outlive the row only to be dropped: 'destroying' now, app_id NULL with the row; the nexus drops them.
  await markAppAddonsDestroying(tx, ref.id);
  await tx.query('DELETE FROM apps WHERE id = $1', [ref.id]);
  await tx.query('DELETE FROM request_stats WHERE app = $1', [name]);
  await tx.query('DELETE FROM locks WHERE name = $1', [`deploy:${name}`]);
  await tx.query(
    'DELETE FROM artifacts a WHERE a.sha256 = ANY($1::text[]) AND NOT EXISTS (SELECT 1 FROM releases r WHERE r.sha256 = a.sha256)',
    [rows.map((r) => r.sha256)],
  );
  await appendEvent(tx, 'app.destroyed', name);
}
