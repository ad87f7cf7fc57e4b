/** The one_offs table (`pier run`): numbering `run.N` per app, the start of an attached one-off, listing, ends. */
import { ConflictError } from '../core/errors.js';
import type { Dyno, OneOffSpec } from '../protocol/index.js';
import type { AppRef } from './apps.js';
import { pickLimits } from './limits.js';
import type { Queryable } from './pool.js';

/** What a one-off runs in: the app's live release (code, config vars as released) and its limits. */
export interface RunRelease {
  release: number;
  sha256: string;
  sizeBytes: number;
  config: Record<string, string>;
  limits: OneOffSpec['limits'];
}

/** The app's live release, or undefined when it has none yet. */
export async function liveReleaseForRun(q: Queryable, app: AppRef): Promise<RunRelease | undefined> {
  const { rows } = await q.query<{ version: number; sha256: string; size_bytes: string; config: Record<string, string>; limits: Record<string, unknown> }>(
    `SELECT r.version, r.sha256, ar.size_bytes, r.config, a.limits
     FROM apps a JOIN releases r ON r.id = a.live_release_id JOIN artifacts ar ON ar.sha256 = r.sha256 WHERE a.id = $1`,
    [app.id],
  );
  const row = rows[0];
  if (!row) return undefined;
  return { release: row.version, sha256: row.sha256, sizeBytes: Number(row.size_bytes), config: row.config, limits: pickLimits(row.limits) };
}

export interface OneOffRow {
  id: string;
  app: string;
  number: number;
  spec: OneOffSpec;
  detach: boolean;
  runnerId: string | null;
  state: Dyno['state'] | 'created';
}

/** Records a new one-off and returns its number (the next of the app's). */
export async function createOneOff(q: Queryable, app: AppRef, id: string, spec: Omit<OneOffSpec, 'dyno'>): Promise<number> {
  for (let attempt = 0; attempt < 10; attempt++) {
    try {
      const { rows } = await q.query<{ number: number }>(
        `INSERT INTO one_offs (id, app_id, number, spec, detach)
         SELECT $1, $2, coalesce(max(number), 0) + 1, $3, $4 FROM one_offs WHERE app_id = $2 RETURNING number`,
        [id, app.id, JSON.stringify(spec), spec.detach],
      );
      return rows[0]!.number;
    } catch (err) {
      if ((err as { code?: string }).code !== '23505') throw err; // unique_violation: another one took the number
    }
  }
  throw new ConflictError(`too many one-offs of '${app.name}' are starting at once; try again`);
}

/** Claims a created one-off for starting on `runnerId` by `nexusId`; undefined when it is not (or no longer) created. */
export async function claimOneOff(q: Queryable, app: AppRef, number: number, runnerId: string, nexusId: string): Promise<OneOffRow | undefined> {
  const { rows } = await q.query<{ id: string; number: number; spec: OneOffSpec; detach: boolean }>(
    `UPDATE one_offs SET state = 'starting', runner_id = $3, nexus_id = $4, started_at = now()
     WHERE app_id = $1 AND number = $2 AND state = 'created' RETURNING id, number, spec, detach`,
    [app.id, number, runnerId, nexusId],
  );
  const row = rows[0];
  return row ? { id: row.id, app: app.name, number: row.number, spec: { ...row.spec, dyno: `run.${row.number}` }, detach: row.detach, runnerId, state: 'starting' } : undefined;
}

/** Whether the app has a one-off of this number, and its state. */
export async function oneOffState(q: Queryable, app: AppRef, number: number): Promise<{ id: string; state: string; runnerId: string | null } | undefined> {
  const { rows } = await q.query<{ id: string; state: string; runner_id: string | null }>(
    'SELECT id, state, runner_id FROM one_offs WHERE app_id = $1 AND number = $2', [app.id, number],
  );
  return rows[0] ? { id: rows[0].id, state: rows[0].state, runnerId: rows[0].runner_id } : undefined;
}

export async function markOneOffRunning(q: Queryable, id: string): Promise<void> {
  await q.query(`UPDATE one_offs SET state = 'running' WHERE id = $1 AND state = 'starting'`, [id]);
}

export async function markOneOffExited(q: Queryable, id: string, exitCode: number | null): Promise<void> {
  await q.query(`UPDATE one_offs SET state = 'exited', ended_at = now(), exit_code = $2 WHERE id = $1 AND state <> 'exited'`, [id, exitCode]);
}

/**
 * Ends the one-offs `runnerId` was given that it no longer runs (it restarted, or they ended while no nexus heard);
 * only those sent to it more than `graceMs` ago, so one still starting is not ended.
 */
export async function endOneOffsGone(q: Queryable, runnerId: string, running: readonly string[], graceMs: number): Promise<void> {
  await q.query(
    `UPDATE one_offs SET state = 'exited', ended_at = now() WHERE runner_id = $1 AND state IN ('starting', 'running')
       AND NOT (id = ANY($2::text[])) AND started_at < now() - make_interval(secs => $3::double precision / 1000)`,
    [runnerId, running, graceMs],
  );
}

/** The app's one-offs that are starting or running, oldest first. */
export async function listOneOffs(q: Queryable, app: AppRef): Promise<Dyno[]> {
  const { rows } = await q.query<{ number: number; spec: OneOffSpec; runner_id: string | null; state: Dyno['state']; detach: boolean; started_at: Date; exit_code: number | null }>(
    `SELECT number, spec, runner_id, state, detach, started_at, exit_code FROM one_offs
     WHERE app_id = $1 AND state IN ('starting', 'running') ORDER BY number`,
    [app.id],
  );
  return rows.map((r) => ({
    name: `run.${r.number}`, command: r.spec.command.join(' '), runnerId: r.runner_id, state: r.state, detach: r.detach,
    startedAt: r.started_at.getTime(), exitCode: r.exit_code,
  }));
}
