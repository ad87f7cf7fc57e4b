/** The nexus's answer to every control command; each mutation runs once per request id, in one transaction. */
import type pg from 'pg';
import {
  recordReleaseOutput,
  addHostname, authenticate, changeConfigVars, createApp, createOwner, currentVersion, destroyApp, eventsSince,
  getApp, getAppCheckByName, getConfigVars, instanceSpec, isSingletonInstance, recordHealthResults, releaseSingletonOf, renewSingleton, listApps, readArtifactChunk, registerNode, reportInstance, removeHostname, requireAdmin, resolveApp, runOnce, takeSnapshot,
  tokenShownOnce, withTransaction, type OnceOptions,
} from '../db/index.js';
import type { NodeLiveness } from '../core/liveness.js';
import type { HandlerMap } from '../transport/index.js';

export interface HandlerContext {
  pool: pg.Pool;
  nexusId: string;
  heartbeatIntervalMs: number;
  /** The one liveness rule (the snapshot's node statuses). */
  liveness: NodeLiveness;
  isLeader: () => boolean;
  /** Called after a runner reported on an instance (wakes the scheduler on the leader). */
  onInstanceReport?: () => void;
  /** Called when a health report turned a target's health (wakes the remediation ladder on the leader). */
  onHealthTurn?: () => void;
  /** The platform's app domains, for the hostname rules. @default ['localhost'] */
  domains?: readonly string[];
  /** Lease of a singleton process type, renewed by its runner. @default 4000 */
  singletonLeaseMs?: number;
}

/** Config replies hold the app's secrets: the requests table keeps none, a retry reads the vars as they are now. */
function configOnce(token: string, app: string): OnceOptions<{ vars: Record<string, string> }> {
  return {
    store: () => null,
    replay: async (_stored, tx) => ({ vars: await getConfigVars(tx, await resolveApp(tx, await authenticate(tx, token), app)) }),
  };
}

/** owner.create remembers the owner's name only: a retried request id answers a message instead of the token. */
const ownerOnce: OnceOptions<{ name: string; token?: string; message?: string }> = {
  store: ({ name }) => ({ name }),
  replay: (stored) => {
    const { name } = stored as { name: string };
    return { name, message: tokenShownOnce(name) };
  },
};

export function controlHandlers(ctx: HandlerContext): HandlerMap {
  const { pool } = ctx;
  return {
    ping: async () => ({ nexusId: ctx.nexusId, version: await currentVersion(pool), isLeader: ctx.isLeader(), at: Date.now() }),
    snapshot: () => takeSnapshot(pool, ctx.liveness),
    'events.since': async (r) => {
      const events = await eventsSince(pool, r.after, r.limit ?? 1000);
      return { version: events.at(-1)?.version ?? r.after, events };
    },
    'node.register': (r) =>
      runOnce(pool, r.id, r.type, async (tx) => {
        await registerNode(tx, { nodeId: r.nodeId, kind: r.kind, address: r.address, info: r.info ?? {} });
        return { nodeId: r.nodeId, heartbeatIntervalMs: ctx.heartbeatIntervalMs, version: await currentVersion(tx) };
      }),
    'artifact.fetch': async (r) => readArtifactChunk(pool, r.sha256, r.offset, r.length),
    'singleton.renew': (r) => withTransaction(pool, (tx) => renewSingleton(tx, r.nodeId, r.instanceId, ctx.singletonLeaseMs ?? 4000)),
    'instance.spec': async (r) => {
      const spec = await instanceSpec(pool, r.instanceId);
      const check = await getAppCheckByName(pool, spec.app);
      const singleton = await isSingletonInstance(pool, r.instanceId);
      // The runner probes with the app's own hostname: apps that check Host (Django's ALLOWED_HOSTS) answer it.
      return { ...spec, ...(check ? { check } : {}), ...(singleton ? { singleton: true } : {}), hostname: `${spec.app}.${ctx.domains?.[0] ?? 'localhost'}` };
    },
    'health.report': async (r) => {
      const { accepted, turns } = await withTransaction(pool, (tx) => recordHealthResults(tx, r.nodeId, r.results));
      if (turns.length > 0) ctx.onHealthTurn?.();
      return { accepted };
    },
    'instance.report': async (r) => {
      const applied = await runOnce(pool, r.id, r.type, async (tx) => {
        // The process is gone (the runner says so): a singleton's lease is free for its successor at once.
        if (r.state === 'stopped') await releaseSingletonOf(tx, r.instanceId);
        return reportInstance(tx, r.nodeId, r.instanceId, r.state, r.port ?? null, r.error ?? null, r.capacity ?? null);
      });
      ctx.onInstanceReport?.();
      return { applied };
    },
    'release.output': async (r) => ({ applied: await runOnce(pool, r.id, r.type, (tx) => recordReleaseOutput(tx, r.nodeId, r.instanceId, r.phase, r.lines)) }),
    'owner.create': (r) =>
      runOnce(pool, r.id, r.type, async (tx) => {
        requireAdmin(await authenticate(tx, r.token));
        const { owner, token } = await createOwner(tx, r.name);
        return { name: owner.name, token };
      }, ownerOnce),
    'app.list': async (r) => ({ apps: await listApps(pool, await authenticate(pool, r.token)) }),
    'app.info': async (r) => {
      const principal = await authenticate(pool, r.token);
      return { app: await getApp(pool, await resolveApp(pool, principal, r.app)) };
    },
    'app.create': (r) => runOnce(pool, r.id, r.type, async (tx) => ({ app: await createApp(tx, await authenticate(tx, r.token), r.name) })),
    'app.destroy': (r) =>
      runOnce(pool, r.id, r.type, async (tx) => {
        await destroyApp(tx, await authenticate(tx, r.token), r.app);
        return { ok: true as const };
      }),
    'host.add': (r) =>
      runOnce(pool, r.id, r.type, async (tx) => {
        const app = await resolveApp(tx, await authenticate(tx, r.token), r.app, true);
        return { hostnames: await addHostname(tx, app, r.hostname, ctx.domains) };
      }),
    'host.remove': (r) =>
      runOnce(pool, r.id, r.type, async (tx) => {
        const app = await resolveApp(tx, await authenticate(tx, r.token), r.app, true);
        return { hostnames: await removeHostname(tx, app, r.hostname) };
      }),
    'config.get': async (r) => ({ vars: await getConfigVars(pool, await resolveApp(pool, await authenticate(pool, r.token), r.app)) }),
    'config.set': (r) =>
      runOnce(pool, r.id, r.type, async (tx) => {
        const principal = await authenticate(tx, r.token);
        const app = await resolveApp(tx, principal, r.app, true);
        return { vars: await changeConfigVars(tx, app, r.vars, [], principal.ownerId) };
      }, configOnce(r.token, r.app)),
    'config.unset': (r) =>
      runOnce(pool, r.id, r.type, async (tx) => {
        const principal = await authenticate(tx, r.token);
        const app = await resolveApp(tx, principal, r.app, true);
        return { vars: await changeConfigVars(tx, app, {}, r.keys, principal.ownerId) };
      }, configOnce(r.token, r.app)),
  };
}

