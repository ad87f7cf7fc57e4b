/** Owners and their API tokens (stored as SHA-256 hashes). */
import { ConflictError, NotFoundError, PierError } from '../core/errors.js';
import { hashToken, newToken } from '../core/ids.js';
import type { Owner } from '../protocol/index.js';
import { appendEvent } from './events.js';
import { isUniqueViolation, type Queryable } from './pool.js';

/** An authenticated caller. */
export interface Principal {
  ownerId: number;
  name: string;
  isAdmin: boolean;
}

type OwnerRow = { id: number; name: string; is_admin: boolean; created_at: Date };

/** Creates an owner with a fresh token; returns the token (shown once, never stored). */
export async function createOwner(tx: Queryable, name: string, isAdmin = false, token = newToken()): Promise<{ owner: Owner; token: string }> {
  try {
    const { rows } = await tx.query<OwnerRow>(
      'INSERT INTO owners (name, token_hash, is_admin) VALUES ($1, $2, $3) RETURNING id, name, is_admin, created_at',
      [name, hashToken(token), isAdmin],
    );
    await appendEvent(tx, 'owner.created', null, { owner: name });
    return { owner: toOwner(rows[0]!), token };
  } catch (err) {
    if (isUniqueViolation(err, 'owners_name_key')) throw new ConflictError(`owner '${name}' already exists`);
    throw err;
  }
}

/**
 * What a retried owner.create answers instead of the token: the token is never stored (not even in the requests
 * table), so only the first answer had it.
 */
export function tokenShownOnce(owner: string): string {
  return `owner '${owner}' was created by the first answer to this request, which alone showed its API token; if that token was lost, run 'pier tokens:rotate --owner ${owner}'`;
}

/**
 * Gives `owner` (default: the caller) a new API token and returns it; the old token is refused from this commit
 * on, by every replica (tokens are looked up in PostgreSQL on every request, never cached). Owners rotate their
 * own token; operators may rotate anyone's.
 */
export async function rotateToken(tx: Queryable, principal: Principal, owner = principal.name): Promise<{ owner: string; token: string }> {
  if (owner !== principal.name) requireAdmin(principal);
  const token = newToken();
  const result = await tx.query('UPDATE owners SET token_hash = $2 WHERE name = $1', [owner, hashToken(token)]);
  if (result.rowCount === 0) throw new NotFoundError(`owner '${owner}' not found; GET /v1/owners lists them`);
  await appendEvent(tx, 'owner.token_rotated', null, { owner, by: principal.name });
  return { owner, token };
}

/** Finds the owner a token belongs to, or throws PIER_UNAUTHORIZED. */
export async function authenticate(q: Queryable, token: string | undefined): Promise<Principal> {
  if (!token) throw new PierError('PIER_UNAUTHORIZED', "missing API token; run 'pier login URL --token T' or set PIER_TOKEN");
  const { rows } = await q.query<OwnerRow>('SELECT id, name, is_admin, created_at FROM owners WHERE token_hash = $1', [hashToken(token)]);
  const row = rows[0];
  if (!row) throw new PierError('PIER_UNAUTHORIZED', 'invalid API token; check PIER_TOKEN or run pier login again');
  return { ownerId: row.id, name: row.name, isAdmin: row.is_admin };
}

export function requireAdmin(principal: Principal): void {
  if (!principal.isAdmin) throw new PierError('PIER_FORBIDDEN', 'this needs an operator (admin) token');
}

export async function listOwners(q: Queryable): Promise<Owner[]> {
  const { rows } = await q.query<OwnerRow>('SELECT id, name, is_admin, created_at FROM owners ORDER BY name');
  return rows.map(toOwner);
}

/**
 * Makes sure the admin owner exists with exactly this token (used by `pier up`, which keeps the token in its
 * data folder). Returns true when it created or re-keyed the owner.
 */
export async function ensureAdmin(tx: Queryable, name: string, token: string): Promise<boolean> {
  const hash = hashToken(token);
  const { rows } = await tx.query<{ token_hash: string }>('SELECT token_hash FROM owners WHERE name = $1', [name]);
  if (rows[0]?.token_hash === hash) return false;
  if (rows[0]) {
    await tx.query('UPDATE owners SET token_hash = $2, is_admin = true WHERE name = $1', [name, hash]);
    return true;
  }
  await createOwner(tx, name, true, token);
  return true;
}

function toOwner(row: OwnerRow): Owner {
  return { name: row.name, isAdmin: row.is_admin, createdAt: row.created_at.getTime() };
}
