/** Custom hostnames attached to apps (exact names or `*.domain` wildcards). */
import { ConflictError, NotFoundError, ValidationError } from '../core/errors.js';
import { hostnameRefusal } from '../protocol/index.js';
import type { AppRef } from './apps.js';
import { appendEvent } from './events.js';
import { isUniqueViolation, type Queryable } from './pool.js';

export async function listHostnames(q: Queryable, app: AppRef): Promise<string[]> {
  const { rows } = await q.query<{ hostname: string }>('SELECT hostname FROM hostnames WHERE app_id = $1 ORDER BY hostname', [app.id]);
  return rows.map((r) => r.hostname);
}

/** The domain every app gets `<app>.<domain>` under when the caller names none (balancer.domain's default). */
const DEFAULT_DOMAINS = ['localhost'];

/**
 * Attaches `hostname` to `app`, after the hostname rules (src/protocol/hostname-rules.ts): PIER_VALIDATION naming
 * the rule for an IP literal, a platform-domain, local-network or single-label name, or a public-suffix wildcard.
 * `domains` are the platform's app domains (the nexus passes balancer.domain).
 */
export async function addHostname(tx: Queryable, app: AppRef, hostname: string, domains: readonly string[] = DEFAULT_DOMAINS): Promise<string[]> {
  const refusal = hostnameRefusal(hostname, { app: app.name, domains });
  if (refusal) throw new ValidationError(refusal.message);
  try {
    await tx.query('INSERT INTO hostnames (hostname, app_id) VALUES ($1, $2)', [hostname, app.id]);
  } catch (err) {
    // Do not say which app holds it: it may belong to another owner.
    if (isUniqueViolation(err, 'hostnames_pkey')) throw new ConflictError(`hostname '${hostname}' is already in use`);
    throw err;
  }
  await appendEvent(tx, 'host.added', app.name, { hostname });
  return listHostnames(tx, app);
}

export async function removeHostname(tx: Queryable, app: AppRef, hostname: string): Promise<string[]> {
  const result = await tx.query('DELETE FROM hostnames WHERE hostname = $1 AND app_id = $2', [hostname, app.id]);
  if (result.rowCount === 0) {
    throw new NotFoundError(`hostname '${hostname}' is not attached to app '${app.name}'; run 'pier hosts -a ${app.name}'`);
  }
  await appendEvent(tx, 'host.removed', app.name, { hostname });
  return listHostnames(tx, app);
}
