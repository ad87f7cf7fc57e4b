/** The background scheduler's side of the state (formations, singleton types, release process types) and singleton placement. */
import {
  claimSingleton, isSingletonHeld, loadBackgroundFormations, loadReleaseProcesses, loadSingletonTypes, placeInstance, type Queryable, type SchedulingState,
} from '../db/index.js';
import type { Action, SchedApp } from './scheduler.js';

type PlaceAction = Extract<Action, { kind: 'place' }>;

export type AppWithTypes = SchedulingState['apps'][number] & Pick<SchedApp, 'hasWeb' | 'processTypes' | 'formation' | 'singletons'>;

export async function withProcessTypes(q: Queryable, state: SchedulingState): Promise<SchedulingState & { apps: AppWithTypes[] }> {
  const formations = await loadBackgroundFormations(q);
  const singletons = await loadSingletonTypes(q);
  const ids = [...new Set(state.apps.flatMap((a) => [a.targetReleaseId, a.liveReleaseId]).filter((id): id is number => id !== null))];
  const releases = await loadReleaseProcesses(q, ids);
  return {
    ...state,
    apps: state.apps.map((app) => {
      const processTypes: Record<number, string[]> = {};
      for (const id of [app.targetReleaseId, app.liveReleaseId]) if (id !== null) processTypes[id] = Object.keys(releases.get(Number(id))?.processes ?? {});
      const target = app.targetReleaseId === null ? undefined : releases.get(Number(app.targetReleaseId));
      return { ...app, hasWeb: target?.hasWeb ?? true, processTypes, formation: formations.get(Number(app.id)) ?? {},
        singletons: singletons.get(Number(app.id)) ?? [],
      };
    }),
  };
}

/**
 * Places a singleton type's instance only while nobody holds its lease (a silent runner's instance keeps it until
 * it runs out), taking the lease for the new instance in the same transaction (under the scheduling lock).
 */
export async function placeSingleton(tx: Queryable, action: PlaceAction, leaseMs: number): Promise<void> {
  const { rows } = await tx.query<{ name: string }>('SELECT name FROM apps WHERE id = $1', [action.appId]);
  const app = rows[0]!.name;
  const type = action.processType ?? 'web';
  if (await isSingletonHeld(tx, app, type)) return;
  const id = await placeInstance(tx, action.appId, action.releaseId, action.runnerId, type, action.name ?? null);
  await claimSingleton(tx, app, type, id, leaseMs);
}
