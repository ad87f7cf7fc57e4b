/** Nodes of the cluster (nexus replicas, runners, balancers, collectors): registration, heartbeats, listing. */
import { NotFoundError, ValidationError } from '../core/errors.js';
import type { NodeLiveness } from '../core/liveness.js';
import type { Node, NodeKind } from '../protocol/index.js';
import { appendEvent } from './events.js';
import { ADVISORY, type Queryable } from './pool.js';

export interface NodeRegistration {
  nodeId: string;
  kind: NodeKind;
  address: string;
  info?: Record<string, unknown>;
}

export async function registerNode(tx: Queryable, node: NodeRegistration): Promise<void> {
  await tx.query(
    `INSERT INTO nodes (id, kind, address, info, status, last_heartbeat_at) VALUES ($1, $2, $3, $4, 'alive', now())
     ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, address = excluded.address, info = excluded.info,
       last_heartbeat_at = now()`, // a node marked down stays so until the leader records node.up
    [node.nodeId, node.kind, node.address, JSON.stringify(node.info ?? {})],
  );
  await appendEvent(tx, 'node.registered', null, { nodeId: node.nodeId, kind: node.kind, address: node.address });
}

/** Records the latest heartbeat time of many nodes in one statement (heartbeats are batched in memory). */
export async function recordHeartbeats(q: Queryable, seen: Map<string, number>): Promise<void> {
  if (seen.size === 0) return;
  const ids = [...seen.keys()];
  const times = ids.map((id) => new Date(seen.get(id)!).toISOString());
  await q.query(
    `UPDATE nodes n SET last_heartbeat_at = greatest(n.last_heartbeat_at, t.at)
     FROM unnest($1::text[], $2::timestamptz[]) AS t(id, at) WHERE n.id = t.id`,
    [ids, times],
  );
}

/** A nexus replica announces itself (no event: replicas come and go with restarts). */
export async function upsertNexus(q: Queryable, nodeId: string, address: string, info: Record<string, unknown>, leaderPid: number | null): Promise<void> {
  await q.query(
    `INSERT INTO nodes (id, kind, address, info, status, last_heartbeat_at, leader_pid) VALUES ($1, 'nexus', $2, $3, 'alive', now(), $4)
     ON CONFLICT (id) DO UPDATE SET kind = 'nexus', address = excluded.address, info = excluded.info, status = 'alive',
       last_heartbeat_at = now(), leader_pid = excluded.leader_pid`,
    [nodeId, address, JSON.stringify(info), leaderPid],
  );
}

type NodeRow = {
  id: string; kind: NodeKind; address: string; last_heartbeat_at: Date | null; info: Record<string, unknown>; is_leader: boolean; draining_since: Date | null;
};

/** Every node, its liveness by the one rule (core/liveness.ts) and what its newest heartbeat reported. */
export async function listNodes(q: Queryable, liveness: NodeLiveness): Promise<Node[]> {
  const { rows } = await q.query<NodeRow>(
    `SELECT n.id, n.kind, n.address, n.last_heartbeat_at, n.info, n.draining_since,
            EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.pid = n.leader_pid
                    AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 2) AS is_leader
     FROM nodes n ORDER BY n.kind, n.id`,
    [ADVISORY.namespace, ADVISORY.leader],
  );
  const now = Date.now();
  return rows.map((r) => {
    const stored = r.last_heartbeat_at?.getTime() ?? null;
    const summary = liveness.summaries.get(r.id) ?? {};
    return {
      id: r.id,
      kind: r.kind,
      address: r.address,
      status: liveness.status(r.id, stored, now),
      lastHeartbeatAt: liveness.newestBeat(r.id, stored),
      isLeader: r.is_leader,
      info: r.info,
      ...(summary.load !== undefined ? { load: Math.round(summary.load * 100) / 100 } : {}),
      ...(summary.instances !== undefined ? { instances: summary.instances } : {}),
      ...(summary.repairs !== undefined ? { repairs: summary.repairs } : {}),
      ...(r.draining_since ? { drainingSince: r.draining_since.getTime() } : {}),
    };
  });
}

/**
 * Drains a runner (`pier nodes:drain`), or undoes it: while draining, the scheduler places nothing new on it and
 * moves what runs there to other runners (scheduler.ts). Draining again keeps the first time. Records `node.drained`.
 * @throws NotFoundError for an unknown node; ValidationError for a node that is not a runner.
 */
export async function setNodeDraining(tx: Queryable, nodeId: string, isDraining: boolean): Promise<void> {
  const { rows } = await tx.query<{ kind: string }>('SELECT kind FROM nodes WHERE id = $1 FOR UPDATE', [nodeId]);
  if (!rows[0]) throw new NotFoundError(`no node '${nodeId}'; run 'pier nodes'`);
  if (rows[0].kind !== 'runner') throw new ValidationError(`only runners can be drained; '${nodeId}' is a ${rows[0].kind}`);
  await tx.query('UPDATE nodes SET draining_since = CASE WHEN $2 THEN coalesce(draining_since, now()) END WHERE id = $1', [nodeId, isDraining]);
  await appendEvent(tx, 'node.drained', null, { id: nodeId, isDraining });
}

export async function nodeExists(q: Queryable, nodeId: string): Promise<boolean> {
  const { rowCount } = await q.query('SELECT 1 FROM nodes WHERE id = $1', [nodeId]);
  return (rowCount ?? 0) > 0;
}
