/**
 * Releases and their artifacts. A release is an artifact (stored once per sha256) plus the config vars it runs
 * with; creating one makes it the app's target, which the scheduler then places (a deploy).
 */
import { ConflictError, NotFoundError } from '../core/errors.js';
import { sha256Hex } from '../core/ids.js';
import type { AppLimits, Release } from '../protocol/index.js';
import type { AppRef } from './apps.js';
import { appendEvent } from './events.js';
import { claimDeploy, type DeployClaim } from './deploy-lock.js';
import { promoteRelease } from './release-states.js';
import { addonVarsNow } from './addons.js';
import { replaceConfigVars } from './config-vars.js';
import type { Queryable } from './pool.js';
import { pickLimits } from './limits.js';

type ReleaseRow = {
  version: number; sha256: string; size_bytes: number; status: Release['status']; description: string;
  created_by: string | null; created_at: Date; error: string | null;
};

const RELEASE_SELECT = `
  SELECT r.version, r.sha256, ar.size_bytes, r.status, r.description, o.name AS created_by, r.created_at, r.error
  FROM releases r JOIN artifacts ar ON ar.sha256 = r.sha256 LEFT JOIN owners o ON o.id = r.created_by`;

function toRelease(row: ReleaseRow): Release {
  return {
    version: row.version, sha256: row.sha256, sizeBytes: row.size_bytes, status: row.status, description: row.description,
    createdBy: row.created_by, createdAt: row.created_at.getTime(), error: row.error,
  };
}

/** Stores artifact bytes by content hash (once); returns the hash. */
export async function storeArtifact(tx: Queryable, bytes: Uint8Array): Promise<string> {
  const sha256 = sha256Hex(bytes);
  await tx.query('INSERT INTO artifacts (sha256, size_bytes, bytes) VALUES ($1, $2, $3) ON CONFLICT (sha256) DO NOTHING', [sha256, bytes.byteLength, Buffer.from(bytes)]);
  return sha256;
}

/**
 * Records release vN+1 of `app` with the app's current config vars and makes it the deploy target.
 * The caller holds the app row lock (resolveApp(…, forUpdate)), so versions never collide.
 */
export async function createRelease(
  tx: Queryable, app: AppRef, sha256: string, ownerId: number | null, description: string,
  options: {
    stage?: boolean; claim?: DeployClaim; strategy?: 'bluegreen' | 'rolling';
    /**
     * Its release phase: 'run' (the upload has a `release:` line), 'same-code' (a config or limits change: run it
     * when the code has one, as Heroku does) or none (a rollback: not run again). @default none
     */
    releasePhase?: 'run' | 'same-code';
  } = {},
): Promise<Release> {
  const { rows } = await tx.query<{ id: number; version: number }>(
    `INSERT INTO releases (app_id, version, sha256, created_by, description, config)
     SELECT $1, coalesce((SELECT max(version) FROM releases WHERE app_id = $1), 0) + 1, $2, $3, $4,
            coalesce((SELECT jsonb_object_agg(key, value) FROM config_vars WHERE app_id = $1), '{}')
     RETURNING id, version`,
    [app.id, sha256, ownerId, description],
  );
  const { id, version } = rows[0]!;
  if (options.strategy === 'rolling') await tx.query("UPDATE releases SET strategy = 'rolling' WHERE id = $1", [id]);
  if (options.releasePhase === 'run') await tx.query("UPDATE releases SET release_phase = 'pending' WHERE id = $1", [id]);
  if (options.releasePhase === 'same-code') {
    await tx.query(
      `UPDATE releases r SET release_phase = 'pending' WHERE r.id = $1
       AND EXISTS (SELECT 1 FROM releases o WHERE o.app_id = r.app_id AND o.sha256 = r.sha256 AND o.id <> r.id AND o.release_phase IS NOT NULL)`,
      [id],
    );
  }
  await appendEvent(tx, 'release.created', app.name, { version, sha256, description, ...(options.stage ? { stage: true } : {}) });
  if (options.claim) await claimDeploy(tx, app, id, { ...options.claim, holder: `${options.claim.holder} deploying v${version}` });
  await tx.query(`UPDATE apps SET ${options.stage ? 'stage_release_id' : 'release_id'} = $2 WHERE id = $1`, [app.id, id]);
  return (await getRelease(tx, app, version))!;
}

/** The release the app is deployed from (its target), if any. */
export async function currentReleaseSha(q: Queryable, app: AppRef): Promise<string | undefined> {
  const { rows } = await q.query<{ sha256: string }>('SELECT r.sha256 FROM apps a JOIN releases r ON r.id = a.release_id WHERE a.id = $1', [app.id]);
  return rows[0]?.sha256;
}

export async function getRelease(q: Queryable, app: AppRef, version: number): Promise<Release | undefined> {
  const { rows } = await q.query<ReleaseRow>(`${RELEASE_SELECT} WHERE r.app_id = $1 AND r.version = $2`, [app.id, version]);
  return rows[0] ? toRelease(rows[0]) : undefined;
}

export async function listReleases(q: Queryable, app: AppRef): Promise<Release[]> {
  const { rows } = await q.query<ReleaseRow>(`${RELEASE_SELECT} WHERE r.app_id = $1 ORDER BY r.version DESC`, [app.id]);
  return rows.map(toRelease);
}

/** A slice of an artifact, for runners fetching it in chunks. */
export async function readArtifactChunk(q: Queryable, sha256: string, offset: number, length: number): Promise<{ data: Buffer; totalBytes: number }> {
  const { rows } = await q.query<{ data: Buffer; size_bytes: number }>(
    'SELECT substring(bytes FROM $2::int + 1 FOR $3::int) AS data, size_bytes FROM artifacts WHERE sha256 = $1',
    [sha256, offset, length],
  );
  if (!rows[0]) throw new NotFoundError(`artifact ${sha256} not found`);
  return { data: rows[0].data, totalBytes: rows[0].size_bytes };
}

/** What a runner needs to start an instance. */
export interface InstanceSpec {
  instanceId: string;
  app: string;
  release: number;
  sha256: string;
  sizeBytes: number;
  processType: string;
  config: Record<string, string>;
  runnerId: string;
  state: string;
  /** Limits an operator set for the app. */
  limits: AppLimits;
}

export async function instanceSpec(q: Queryable, instanceId: string): Promise<InstanceSpec> {
  const { rows } = await q.query<{ app: string; version: number; sha256: string; size_bytes: number; process_type: string; config: Record<string, string>; runner_id: string; state: string; limits: Record<string, unknown> }>(
    `SELECT a.name AS app, r.version, r.sha256, ar.size_bytes, i.process_type, r.config, i.runner_id, i.state, a.limits
     FROM instances i JOIN apps a ON a.id = i.app_id JOIN releases r ON r.id = i.release_id JOIN artifacts ar ON ar.sha256 = r.sha256
     WHERE i.id = $1`,
    [instanceId],
  );
  const row = rows[0];
  if (!row) throw new NotFoundError(`instance '${instanceId}' not found`);
  return {
    instanceId, app: row.app, release: row.version, sha256: row.sha256, sizeBytes: row.size_bytes,
    processType: row.process_type, config: row.config, runnerId: row.runner_id, state: row.state, limits: pickLimits(row.limits),
  };
}

/**
 * Rolls `app` back to release `version` (default: the newest release older than the live one that was live
 * before), as Heroku does: a new release with that release's code and config vars, which also become the app's
 * config vars — but for the add-ons' vars, which keep their current values (addonVarsNow). The caller holds the app row lock. @throws ConflictError when there is nothing to roll back to
 */
export async function rollbackRelease(tx: Queryable, app: AppRef, version: number | undefined, ownerId: number | null, claim?: DeployClaim): Promise<Release> {
  const { rows } = await tx.query<{ version: number; status: string; sha256: string; config: Record<string, string> }>(
    version === undefined
      ? `SELECT r.version, r.status, r.sha256, r.config FROM releases r
         WHERE r.app_id = $1 AND r.status = 'superseded'
           AND r.version < coalesce((SELECT lr.version FROM apps a JOIN releases lr ON lr.id = a.live_release_id WHERE a.id = $1), 2147483647)
         ORDER BY r.version DESC LIMIT 1`
      : 'SELECT r.version, r.status, r.sha256, r.config FROM releases r WHERE r.app_id = $1 AND r.version = $2',
    version === undefined ? [app.id] : [app.id, version],
  );
  const source = rows[0];
  if (!source) {
    if (version !== undefined) throw new NotFoundError(`release v${version} of app '${app.name}' not found; run 'pier releases -a ${app.name}'`);
    throw new ConflictError(`app '${app.name}' has no earlier good release to roll back to; name one: pier rollback vN -a ${app.name}`);
  }
  if (source.status === 'failed') throw new ConflictError(`v${source.version} failed to start; roll back to a release that ran`);
  const vars = { ...source.config };
  for (const { key, value } of await addonVarsNow(tx, app)) {
    if (value === null) delete vars[key];
    else vars[key] = value;
  }
  await replaceConfigVars(tx, app, vars, { rollback: source.version });
  return createRelease(tx, app, source.sha256, ownerId, `rollback to v${source.version}`, { ...(claim ? { claim } : {}) });
}

/**
 * Promotes the app's staged release: it becomes the deploy target (blue/green from its warm stage instance), and
 * the live release takes the stage slot, so promoting again goes back. @throws ConflictError without a ready stage
 */
export async function promoteStage(tx: Queryable, app: AppRef, claim?: DeployClaim): Promise<Release> {
  const { rows } = await tx.query<{ stage_id: number | null; live_id: number | null; version: number | null; live_version: number | null; ready: number }>(
    `SELECT a.stage_release_id AS stage_id, a.live_release_id AS live_id, r.version, l.version AS live_version,
            (SELECT count(*)::int FROM instances i WHERE i.release_id = a.stage_release_id AND i.state = 'ready') AS ready
     FROM apps a LEFT JOIN releases r ON r.id = a.stage_release_id LEFT JOIN releases l ON l.id = a.live_release_id WHERE a.id = $1`,
    [app.id],
  );
  const row = rows[0]!;
  if (row.stage_id === null || row.version === null) throw new ConflictError(`app '${app.name}' has nothing on stage; deploy with: pier deploy --stage -a ${app.name}`);
  if (row.stage_id === row.live_id) throw new ConflictError(`v${row.version} is already live`);
  if (row.ready === 0) throw new ConflictError(`v${row.version} is not ready on stage yet; see 'pier ps -a ${app.name}'`);
  if (claim) await claimDeploy(tx, app, row.stage_id, { ...claim, holder: `${claim.holder} promoting v${row.version}` });
  await promoteRelease(tx, row.stage_id);
  await tx.query('UPDATE apps SET release_id = stage_release_id, stage_release_id = live_release_id WHERE id = $1', [app.id]);
  await appendEvent(tx, 'release.staged', app.name, { release: row.live_version });
  return (await getRelease(tx, app, row.version))!;
}
