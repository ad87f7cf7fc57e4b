/** Adds what the background scheduler needs (formations, each release's process types) to the scheduling state. */
import { loadBackgroundFormations, loadReleaseProcesses, type Queryable, type SchedulingState } from '../db/index.js';
import type { SchedApp } from './scheduler.js';

export type AppWithTypes = SchedulingState['apps'][number] & Pick<SchedApp, 'hasWeb' | 'processTypes' | 'formation'>;

export async function withProcessTypes(q: Queryable, state: SchedulingState): Promise<SchedulingState & { apps: AppWithTypes[] }> {
  const formations = await loadBackgroundFormations(q);
  const ids = [...new Set(state.apps.flatMap((a) => [a.targetReleaseId, a.liveReleaseId]).filter((id): id is number => id !== null))];
  const releases = await loadReleaseProcesses(q, ids);
  return {
    ...state,
    apps: state.apps.map((app) => {
      const processTypes: Record<number, string[]> = {};
      for (const id of [app.targetReleaseId, app.liveReleaseId]) if (id !== null) processTypes[id] = Object.keys(releases.get(Number(id))?.processes ?? {});
      const target = app.targetReleaseId === null ? undefined : releases.get(Number(app.targetReleaseId));
      return { ...app, hasWeb: target?.hasWeb ?? true, processTypes, formation: formations.get(Number(app.id)) ?? {} };
    }),
  };
}
