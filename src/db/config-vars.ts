/** Per-app config vars (reach the app as environment variables). Events name the keys, never the values. */
import { NotFoundError } from '../core/errors.js';
import type { AppRef } from './apps.js';
import { appendEvent } from './events.js';
import type { Queryable } from './pool.js';

export async function getConfigVars(q: Queryable, app: AppRef): Promise<Record<string, string>> {
  const { rows } = await q.query<{ key: string; value: string }>('SELECT key, value FROM config_vars WHERE app_id = $1 ORDER BY key', [app.id]);
  return Object.fromEntries(rows.map((r) => [r.key, r.value]));
}

/** Makes the app's vars exactly `vars` (a rollback restores a release's), recording one `config.changed`. */
export async function replaceConfigVars(tx: Queryable, app: AppRef, vars: Record<string, string>, detail: Record<string, unknown> = {}): Promise<void> {
  const keys = Object.keys(vars);
  await tx.query('DELETE FROM config_vars WHERE app_id = $1', [app.id]);
  if (keys.length > 0) {
    await tx.query(
      'INSERT INTO config_vars (app_id, key, value) SELECT $1, k, v FROM unnest($2::text[], $3::text[]) AS t(k, v)',
      [app.id, keys, keys.map((k) => vars[k])],
    );
  }
  await appendEvent(tx, 'config.changed', app.name, { ...detail, keys });
}

/**
 * Sets and unsets vars in one change (one `config.changed` event); unsetting a missing key is an error naming it.
 * Only the vars: the new release a change makes is `changeConfigVars`'s (release-changes.ts).
 */
export async function storeConfigChange(tx: Queryable, app: AppRef, set: Record<string, string>, unset: string[]): Promise<void> {
  if (unset.length > 0) {
    const { rows } = await tx.query<{ key: string }>('SELECT key FROM config_vars WHERE app_id = $1 AND key = ANY($2)', [app.id, unset]);
    const present = new Set(rows.map((r) => r.key));
    const missing = unset.filter((k) => !present.has(k));
    if (missing.length > 0) {
      throw new NotFoundError(`config var '${missing[0]}' is not set on app '${app.name}'; run 'pier config -a ${app.name}'`);
    }
    await tx.query('DELETE FROM config_vars WHERE app_id = $1 AND key = ANY($2)', [app.id, unset]);
  }
  const keys = Object.keys(set);
  if (keys.length > 0) {
    await tx.query(
      `INSERT INTO config_vars (app_id, key, value)
       SELECT $1, k, v FROM unnest($2::text[], $3::text[]) AS t(k, v)
       ON CONFLICT (app_id, key) DO UPDATE SET value = excluded.value, updated_at = now()`,
      [app.id, keys, keys.map((k) => set[k])],
    );
  }
  await appendEvent(tx, 'config.changed', app.name, { set: keys, unset });
}
