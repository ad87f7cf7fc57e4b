/**
 * The postgresql add-on kind: a database and a role of its own per app on the services PostgreSQL
 * (services.postgresUrl, else the platform's server), DATABASE_URL = postgres://role:password@host:port/database.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { PierError } from '../../core/errors.js';
import {
  appDatabaseName, closePlatformDatabases, createAppDatabase, dropAppDatabase, forgetPendingDatabase, openDatabases,
  recordPendingDatabase, stalePendingDatabases, type Addon, type AppDatabase,
} from '../../db/index.js';
import type { AddonKindDeps, AddonKindDriver, AddonRemains, ProvisionedAddon } from './kinds.js';

/**
 * A database recorded as being made this long ago, with no add-on recording it, was left by a create that died: no
 * create takes this long (the API answers well before).
 */
export const PENDING_STALE_MS = 10 * 60_000;

/** Where the services server is, for the nexus (admin URL) and for apps (host and port in DATABASE_URL). */
export interface PostgresTarget {
  adminUrl: string;
  host: string;
  port: number;
  /** The platform's own role, kept able to connect to its database when the platform's server is the services one. */
  keepRoles: string[];
}

export function postgresTarget(deps: Pick<AddonKindDeps, 'config' | 'platformDbUrl'>): PostgresTarget {
  const { services } = deps.config;
  const adminUrl = services.postgresUrl || deps.platformDbUrl;
  const url = new URL(adminUrl);
  const urlHost = url.hostname.replace(/^\[(.*)\]$/, '$1') || url.searchParams.get('host') || '127.0.0.1';
  const platform = new URL(deps.platformDbUrl);
  const keepRoles = platform.host === url.host && platform.username ? [decodeURIComponent(platform.username)] : [];
  return { adminUrl, host: services.postgresHost || urlHost, port: services.postgresPort || Number(url.port || 5432), keepRoles };
}

function databaseUrl(target: PostgresTarget, db: AppDatabase, password: string): string {
  const host = target.host.includes(':') ? `[${target.host}]` : target.host;
  return `postgres://${db.role}:${encodeURIComponent(password)}@${host}:${target.port}/${db.database}`;
}

/** Facts kept in the row's plan (no secret); the role and database are named there. */
interface PostgresPlan extends AppDatabase {
  server: string;
  connectionLimit: number;
}

function planOf(remains: Pick<AddonRemains, 'plan' | 'name'>): PostgresPlan {
  const plan = remains.plan as Partial<PostgresPlan>;
  if (typeof plan.role !== 'string' || typeof plan.database !== 'string') {
    throw new PierError('PIER_INTERNAL', `add-on '${remains.name}' has no database in its plan`);
  }
  return plan as PostgresPlan;
}

export function postgresqlKind(deps: AddonKindDeps): AddonKindDriver {
  const log = deps.log.child({ component: 'nexus.addons.postgresql' });
  const target = postgresTarget(deps);
  const server = `${target.host}:${target.port}`;

  /** One short admin session per change (add-ons are made rarely): no pool held open on the services server. */
  async function withAdmin<T>(what: string, fn: (admin: pg.Client) => Promise<T>): Promise<T> {
    const admin = new pg.Client({ connectionString: target.adminUrl, connectionTimeoutMillis: deps.config.db.connectTimeoutMs, application_name: 'pier-addons' });
    admin.on('error', () => undefined); // a lost connection fails the query in flight; nothing else listens
    try {
      await admin.connect();
    } catch (err) {
      log.error({ err, server }, 'cannot reach the services PostgreSQL');
      throw new PierError('PIER_DB_UNAVAILABLE', `cannot ${what}: the platform's PostgreSQL for add-ons is unreachable; try again later or ask the operator to check services.postgresUrl`, { cause: err });
    }
    try {
      return await fn(admin);
    } catch (err) {
      const code = (err as { code?: string }).code;
      log.error({ err, server, pgCode: code }, 'services PostgreSQL refused a change');
      if (code === '42501') {
        throw new PierError('PIER_CONFIG', `cannot ${what}: the add-ons PostgreSQL role may not create roles or databases; ask the operator to give services.postgresUrl's role CREATEDB and CREATEROLE`, { cause: err });
      }
      if (err instanceof PierError) throw err;
      throw new PierError('PIER_INTERNAL', 'internal error', { cause: err });
    } finally {
      await admin.end().catch(() => undefined);
    }
  }

  return {
    kind: 'postgresql',
    configVar: 'DATABASE_URL',

    async provision({ app }): Promise<ProvisionedAddon> {
      const name = appDatabaseName(app.name);
      const db: AppDatabase = { role: name, database: name };
      const password = randomBytes(24).toString('base64url');
      const connectionLimit = deps.config.services.postgresConnectionLimit;
      // Recorded before it exists: a nexus killed from here to the add-on's commit leaves a record the leader sweeps.
      await recordPendingDatabase(deps.pool, db.database, name);
      await withAdmin('create the database', async (admin) => {
        // Before anything is made: a failure here leaves nothing behind.
        const closed = await closePlatformDatabases(admin, target.keepRoles);
        if (closed.length > 0) log.info({ server, databases: closed }, 'databases closed to PUBLIC: only roles granted CONNECT reach them now');
        const open = await openDatabases(admin);
        if (open.length > 0) {
          // Not fatal (they may hold nothing), but app roles can connect there: the operator closes them.
          log.warn({ server, databases: open }, "app roles can connect to these databases: run 'REVOKE CONNECT ON DATABASE … FROM PUBLIC' as their owner");
        }
        await createAppDatabase(admin, db, password, connectionLimit);
      }).catch(async (err: unknown) => {
        // Nothing was left on the server (createAppDatabase drops what it made): the record goes too.
        await forgetPendingDatabase(deps.pool, db.database).catch(() => undefined); // the sweep drops nothing that is not there
        throw err;
      });
      log.info({ appId: app.id, app: app.name, database: db.database }, 'app database created');
      const plan: PostgresPlan = { ...db, server, connectionLimit };
      return { state: 'ready', plan: { ...plan }, secret: password, configValue: databaseUrl(target, db, password) };
    },

    async onCreated(tx, addon): Promise<void> {
      await forgetPendingDatabase(tx, planOf(addon).database);
    },

    async remove(remains): Promise<'done'> {
      const db = planOf(remains);
      await withAdmin('drop the database', (admin) => dropAppDatabase(admin, { role: db.role, database: db.database }));
      await forgetPendingDatabase(deps.pool, db.database);
      log.info({ addon: remains.name, database: db.database }, 'app database dropped');
      return 'done';
    },

    async sweep(): Promise<void> {
      const stale = await stalePendingDatabases(deps.pool, PENDING_STALE_MS);
      for (const pending of stale) {
        await withAdmin('drop the database', (admin) => dropAppDatabase(admin, { role: pending.name, database: pending.name }));
        await forgetPendingDatabase(deps.pool, pending.name);
        log.warn({ addon: pending.addonName, database: pending.name }, 'dropped the database of an add-on whose create died midway');
      }
    },

    details(addon: Addon): Record<string, unknown> {
      const plan = addon.plan as Partial<PostgresPlan>;
      return { server: plan.server ?? null, database: plan.database ?? null, role: plan.role ?? null, connectionLimit: plan.connectionLimit ?? null };
    },
  };
}
