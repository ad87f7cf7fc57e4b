/**
 * The SQL of PostgreSQL add-ons, run on the services server (services.postgresUrl, else the platform's own) with a
 * role that has CREATEDB and CREATEROLE: each app's database and role, confined to that database, and keeping every
 * other database out of app roles' reach. Driven by src/nexus/addons/postgresql.ts.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import pg from 'pg';

/** What an app's database is made of; names are the platform's own (never an owner's input). */
export interface AppDatabase {
  role: string;
  database: string;
}

/** Names of app roles and databases: `addon_<app>_<8 hex>` (an app name's dashes become underscores). */
export const APP_DATABASE_NAME_PATTERN = /^addon_[a-z][a-z0-9_]{0,29}_[0-9a-f]{8}$/;

/** A fresh role and database name for an app. */
export function appDatabaseName(app: string): string {
  return `addon_${app.replace(/-/g, '_')}_${randomBytes(4).toString('hex')}`;
}

/** A quoted identifier (any name a catalog holds; quotes doubled, as PostgreSQL's quote_ident). */
function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * The SCRAM-SHA-256 verifier of a password (RFC 5803, as PostgreSQL stores it): the server is told the verifier,
 * never the password, so the password is in no server log (log_statement) nor pg_stat_activity.
 */
export function scramVerifier(password: string, iterations = 4096): string {
  const salt = randomBytes(16);
  const salted = pbkdf2Sync(password, salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

/** The services server's own facts the steps below need. */
async function serverFacts(admin: pg.Client): Promise<{ version: number; isSuperuser: boolean; user: string }> {
  const { rows } = await admin.query<{ v: string; su: boolean; u: string }>(
    "SELECT current_setting('server_version_num') AS v, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS su, current_user AS u",
  );
  return { version: Number(rows[0]!.v), isSuperuser: rows[0]!.su, user: rows[0]!.u };
}

/**
 * Makes the app's role (LOGIN with the password, nothing else: no superuser, createdb, createrole, replication,
 * bypassrls; at most `connectionLimit` sessions; INHERIT, as pg_database_owner's rights on its public schema need) and its database owned by it, connectable by it alone.
 * CREATE DATABASE cannot run in a transaction: when a step fails, what was made is dropped before the error goes on.
 */
export async function createAppDatabase(admin: pg.Client, db: AppDatabase, password: string, connectionLimit: number): Promise<void> {
  const facts = await serverFacts(admin);
  const role = ident(db.role);
  try {
    await admin.query(
      `CREATE ROLE ${role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS ` +
      `CONNECTION LIMIT ${Math.trunc(connectionLimit)} PASSWORD ${admin.escapeLiteral(scramVerifier(password))}`,
    );
    // A role that is no superuser gives a database to a role, and later changes or drops it, only as a member that
    // has the role's privileges (PostgreSQL 16+: SET and INHERIT; before: plain membership). The platform's role is
    // trusted with every app's data anyway; app roles are members of nothing.
    if (!facts.isSuperuser) {
      await admin.query(facts.version >= 160000 ? `GRANT ${role} TO CURRENT_USER WITH INHERIT TRUE, SET TRUE` : `GRANT ${role} TO CURRENT_USER`);
    }
    await admin.query(`CREATE DATABASE ${ident(db.database)} OWNER ${role} TEMPLATE template1 ENCODING 'UTF8'`);
    await admin.query(`REVOKE ALL ON DATABASE ${ident(db.database)} FROM PUBLIC`);
    // A REVOKE by a role without the owner's rights only warns: check that it took.
    const open = await admin.query<{ open: boolean }>("SELECT has_database_privilege('public', $1, 'CONNECT') AS open", [db.database]);
    if (open.rows[0]?.open !== false) throw new Error(`CONNECT on database '${db.database}' could not be revoked from PUBLIC`);
  } catch (err) {
    await dropAppDatabase(admin, db).catch(() => undefined); // best effort: the first error is the one to report
    throw err;
  }
}

/**
 * Drops the app's database and role; idempotent (either may be gone already). Its sessions are cut first and no new
 * one is let in (NOLOGIN), so a connected app cannot hold the drop off.
 */
export async function dropAppDatabase(admin: pg.Client, db: AppDatabase): Promise<void> {
  const role = ident(db.role);
  const exists = (await admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [db.role])).rows.length > 0;
  if (exists) {
    await admin.query(`ALTER ROLE ${role} NOLOGIN CONNECTION LIMIT 0`);
    await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1 OR datname = $2', [db.role, db.database]);
  }
  await admin.query(`DROP DATABASE IF EXISTS ${ident(db.database)} WITH (FORCE)`);
  if (exists) await admin.query(`DROP ROLE IF EXISTS ${role}`);
}

/**
 * Keeps app roles out of every other database on the server: CONNECT and TEMPORARY are revoked from PUBLIC on each
 * database this role may change (its own, or all as a superuser). Roles connected to such a database now (the
 * nexus, stats) and the roles in `keep` get CONNECT by name first, so the platform keeps its access. Returns the
 * databases changed.
 */
export async function closePlatformDatabases(admin: pg.Client, keep: readonly string[] = []): Promise<string[]> {
  const facts = await serverFacts(admin);
  const { rows } = await admin.query<{ datname: string }>(
    `SELECT d.datname FROM pg_database d
     WHERE d.datallowconn AND (has_database_privilege('public', d.oid, 'CONNECT') OR has_database_privilege('public', d.oid, 'TEMPORARY'))
       AND ($1 OR pg_has_role(current_user, d.datdba, 'USAGE'))
     ORDER BY d.datname`,
    [facts.isSuperuser],
  );
  const changed: string[] = [];
  for (const { datname } of rows) {
    try {
      if (await closeDatabase(admin, datname, keep)) changed.push(datname);
    } catch (err) {
      // Dropped meanwhile (3D000), or a role in it was (42704): nothing to close there.
      const code = (err as { code?: string }).code;
      if (code !== '3D000' && code !== '42704') throw err;
    }
  }
  return changed;
}

/** Closes one database to PUBLIC (after granting CONNECT to the roles that use it); false for an app's own. */
async function closeDatabase(admin: pg.Client, datname: string, keep: readonly string[]): Promise<boolean> {
  if (APP_DATABASE_NAME_PATTERN.test(datname)) {
    await admin.query(`REVOKE ALL ON DATABASE ${ident(datname)} FROM PUBLIC`);
    return false;
  }
  const users = await admin.query<{ usename: string }>(
    `SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = $1 AND usename IS NOT NULL
     UNION SELECT unnest($2::text[]) UNION SELECT current_user::text`,
    [datname, keep],
  );
  for (const { usename } of users.rows) {
    if (APP_DATABASE_NAME_PATTERN.test(usename)) continue;
    const exists = (await admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [usename])).rows.length > 0;
    if (exists) await admin.query(`GRANT CONNECT, TEMPORARY ON DATABASE ${ident(datname)} TO ${ident(usename)}`);
  }
  await admin.query(`REVOKE CONNECT, TEMPORARY ON DATABASE ${ident(datname)} FROM PUBLIC`);
  return true;
}

/** Databases (not apps') that any role may still connect to: ones this role could not close (not its own). */
export async function openDatabases(admin: pg.Client): Promise<string[]> {
  const { rows } = await admin.query<{ datname: string }>(
    "SELECT datname FROM pg_database WHERE datallowconn AND has_database_privilege('public', oid, 'CONNECT') ORDER BY datname",
  );
  return rows.map((r) => r.datname).filter((name) => !APP_DATABASE_NAME_PATTERN.test(name));
}

/** Whether the app's role or database still exists (tests and the leader's retry check the catalog). */
export async function appDatabaseExists(admin: pg.Client, db: AppDatabase): Promise<{ role: boolean; database: boolean }> {
  const { rows } = await admin.query<{ r: boolean; d: boolean }>(
    'SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1) AS r, EXISTS (SELECT 1 FROM pg_database WHERE datname = $2) AS d',
    [db.role, db.database],
  );
  return { role: rows[0]!.r, database: rows[0]!.d };
}
