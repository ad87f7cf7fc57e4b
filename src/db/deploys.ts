/**
 * Deploys as the owner sees them: each release is one deploy (an upload, a config change, a rollback, a stage
 * upload or a promote), and its steps are the events that concern it, in order — so the API can show a deploy's
 * progress and history without a second source of truth.
 */
import { NotFoundError } from '../core/errors.js';
import type { AppRef } from './apps.js';
import type { Queryable } from './pool.js';
import { appendEvent } from './events.js';
import { getRelease, listReleases } from './releases.js';
import type { Release } from '../protocol/index.js';

export interface DeployStep {
  at: number;
  /** Event version. */
  version: number;
  /** What happened: created, locked, instance <state>, instance removed, build output, release output, staged, live, failed, reverted, verdict passed. */
  step: string;
  detail: string;
  /** The instance the step is about (instance steps, output). */
  instance?: string;
  /** The runner it happened on (instance steps, output). */
  runnerId?: string;
  /** The instance's process type: `web`, a background type, or `release` (the release phase's one task). */
  processType?: string;
  /** Output lines of the build or the release phase, in order (output steps). */
  lines?: string[];
  /** Why the live-traffic verdict switched back (the reverted step). */
  reason?: string;
}

export interface Deploy {
  /** The release version (deploy vN makes release vN). */
  id: number;
  release: Release;
  steps: DeployStep[];
  /** The line of the release's error that says what went wrong (the app's exception, the build's last line); null unless it failed. */
  errorLine: string | null;
}

/** Terminal steps: after one of them (and the verdict, when there is one) nothing more happens to the deploy. */
const MAX_EVENTS = 2000;

/** The deploy of release `version`: its release and its steps. @throws NotFoundError */
export async function getDeploy(q: Queryable, app: AppRef, version: number): Promise<Deploy> {
  const release = await getRelease(q, app, version);
  if (!release) throw new NotFoundError(`deploy ${version} of app '${app.name}' not found; run 'pier releases -a ${app.name}'`);
  const { rows } = await q.query<{ id: number; type: string; data: Record<string, unknown>; created_at: Date }>(
    `SELECT id, type, data, created_at FROM events
     WHERE app = $1 AND id >= coalesce((SELECT min(id) FROM events WHERE app = $1 AND type = 'release.created' AND (data->>'version')::int = $2), 0)
     ORDER BY id LIMIT $3`,
    [app.name, version, MAX_EVENTS],
  );
  const steps: DeployStep[] = [];
  const mine = new Set<string>();
  for (const row of rows) {
    const step = describe(row.type, row.data, version, mine);
    if (step) steps.push({ at: row.created_at.getTime(), version: row.id, ...step });
    if (isEnd(row.type, row.data, version, steps)) break;
  }
  return { id: version, release, steps, errorLine: release.status === 'failed' ? lastErrorLine(release.error) : null };
}

/** Every deploy of the app, newest first (without steps). */
export async function listDeploys(q: Queryable, app: AppRef): Promise<Array<{ id: number; release: Release }>> {
  return (await listReleases(q, app)).map((release) => ({ id: release.version, release }));
}

/**
 * The line of a failed release's error to show first: its last line that is not the runner's own note in
 * parentheses — the exception of a traceback, the last line a failed build or release phase printed.
 */
export function lastErrorLine(error: string | null): string {
  const lines = (error ?? '').split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const own = lines.filter((l) => !/^\(.*\)$/.test(l));
  return (own.at(-1) ?? lines.at(-1)?.replace(/^\((.*)\)$/, '$1') ?? 'unknown error').slice(0, 500);
}

type Described = Omit<DeployStep, 'at' | 'version'>;

function describe(type: string, data: Record<string, unknown>, version: number, mine: Set<string>): Described | undefined {
  const release = typeof data.release === 'number' ? data.release : undefined;
  switch (type) {
    case 'release.created':
      return data.version === version ? { step: 'created', detail: `${String(data.description)}${data.stage ? ' (to stage)' : ''}` } : undefined;
    case 'lock.acquired':
      return typeof data.holder === 'string' && data.holder.endsWith(` v${version}`) ? { step: 'locked', detail: `deploy lock taken by ${data.holder} (token ${String(data.token)})` } : undefined;
    case 'instance.changed': {
      if (data.release !== version || typeof data.id !== 'string') return undefined;
      mine.add(data.id);
      const where = data.port === null ? String(data.runnerId) : `${String(data.runnerId)} (${String(data.host)}:${String(data.port)})`;
      return { step: `instance ${String(data.state)}`, detail: `${data.id} on ${where}`, instance: data.id, runnerId: String(data.runnerId), processType: String(data.processType ?? 'web') };
    }
    case 'release.output': {
      if (release !== version || !Array.isArray(data.lines)) return undefined;
      const lines = data.lines.map(String);
      return { step: `${data.phase === 'release' ? 'release' : 'build'} output`, detail: lines.join('\n'), instance: String(data.instance), runnerId: String(data.runnerId), lines };
    }
    case 'instance.removed':
      return typeof data.id === 'string' && mine.has(data.id) ? { step: 'instance removed', detail: data.id, instance: data.id } : undefined;
    case 'release.staged':
      return release === version ? { step: 'staged', detail: 'on the stage slot' } : undefined;
    case 'release.live':
      return release === version ? { step: 'live', detail: 'balancers route to it' } : undefined;
    case 'release.failed':
      return release === version ? { step: 'failed', detail: String(data.error ?? '') } : undefined;
    case 'release.reverted':
      return release === version ? { step: 'reverted', detail: `back to v${String(data.previous)}: ${String(data.reason)}`, reason: String(data.reason) } : undefined;
    case 'release.verdict':
      return release === version ? { step: 'verdict passed', detail: `${String(data.requests ?? 0)} requests, ${String(data.s5xx ?? 0)} 5xx` } : undefined;
    default:
      return undefined;
  }
}

function isEnd(type: string, data: Record<string, unknown>, version: number, steps: DeployStep[]): boolean {
  if (data.release !== version) return type === 'release.live' && steps.some((s) => s.step === 'live' || s.step === 'staged');
  return type === 'release.failed' || type === 'release.reverted' || type === 'release.verdict';
}

/** Until when the live-traffic verdict watches release `version` (undefined when it does not). */
export async function verdictUntil(q: Queryable, app: AppRef, version: number): Promise<number | undefined> {
  const { rows } = await q.query<{ until: Date }>(
    `SELECT a.verdict_until AS until FROM apps a JOIN releases r ON r.id = a.live_release_id
     WHERE a.id = $1 AND r.version = $2 AND a.verdict_until IS NOT NULL`,
    [app.id, version],
  );
  return rows[0]?.until.getTime();
}

/**
 * Records output lines of an instance's build or release phase (`release.output`, shown as the deploy's output
 * steps). Lines from a runner the instance is not placed on are dropped (false).
 */
export async function recordReleaseOutput(tx: Queryable, runnerId: string, instanceId: string, phase: 'build' | 'release', lines: string[]): Promise<boolean> {
  const { rows } = await tx.query<{ app: string; version: number }>(
    `SELECT a.name AS app, r.version FROM instances i JOIN apps a ON a.id = i.app_id JOIN releases r ON r.id = i.release_id
     WHERE i.id = $1 AND i.runner_id = $2`,
    [instanceId, runnerId],
  );
  if (!rows[0]) return false;
  await appendEvent(tx, 'release.output', rows[0].app, { release: rows[0].version, phase, runnerId, instance: instanceId, lines });
  return true;
}
