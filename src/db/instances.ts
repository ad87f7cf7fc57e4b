/** App instances placed on runners. */
import type { Instance, InstanceState } from '../protocol/index.js';
import type { Queryable } from './pool.js';

const INSTANCE_SELECT = `
  SELECT i.id, a.name AS app, r.version AS release, (a.live_release_id = i.release_id OR i.routed) AS is_live,
         (a.stage_release_id = i.release_id) AS is_stage, i.process_type, i.process_name, i.created_at,
         i.runner_id, n.address AS host, i.port, i.state, i.out_of_rotation, i.capacity
  FROM instances i JOIN apps a ON a.id = i.app_id JOIN releases r ON r.id = i.release_id JOIN nodes n ON n.id = i.runner_id`;

type InstanceRow = {
  id: string; app: string; release: number; is_live: boolean | null; is_stage: boolean | null; process_type: string; process_name: string | null; created_at: Date;
  runner_id: string; host: string; port: number | null; state: InstanceState; out_of_rotation?: boolean; capacity?: number | null;
};

function toInstance(row: InstanceRow): Instance {
  return {
    id: row.id, app: row.app, release: row.release, isLive: row.is_live === true, isStage: row.is_stage === true, processType: row.process_type, name: row.process_name, createdAt: row.created_at.getTime(),
    runnerId: row.runner_id, host: row.host, port: row.port, state: row.state,
    ...(row.out_of_rotation === true ? { isOutOfRotation: true } : {}),
    ...(typeof row.capacity === 'number' ? { capacity: row.capacity } : {}),
  };
}

export async function listInstances(q: Queryable): Promise<Instance[]> {
  const { rows } = await q.query<InstanceRow>(`${INSTANCE_SELECT} ORDER BY a.name, i.created_at, i.id`);
  return rows.map(toInstance);
}

export async function getInstance(q: Queryable, id: string): Promise<Instance | undefined> {
  const { rows } = await q.query<InstanceRow>(`${INSTANCE_SELECT} WHERE i.id = $1`, [id]);
  return rows[0] ? toInstance(rows[0]) : undefined;
}
