/**
 * A destroyed app leaves nothing on a collector: on its `app.destroyed` event the collector deletes the app's log
 * folder, its pending aggregates and release windows, and its request minutes up to the destroy (a flush racing
 * the nexus's own delete would otherwise bring them back), and from then on drops lines and records of that name
 * stamped before the destroy (still in flight from runners and balancers). After each snapshot (a collector that
 * was down during the destroy) it deletes the log folders of apps that no longer exist, and the chunks of a
 * re-created name written before its creation. The API also hides lines older than the app (see routes/logs.ts).
 */
import type { Logger } from 'pino';
import { deleteRequestStats, type Pool } from '../db/index.js';
import type { App } from '../protocol/index.js';
import type { RequestAggregator } from './aggregator.js';
import type { LogStore } from './log-store.js';
import type { ReleaseWindows } from './release-window.js';

export interface AppPurgeOptions {
  store: LogStore;
  aggregator: RequestAggregator;
  releases: ReleaseWindows;
  pool: Pool;
  /** Resolves when the flush of aggregates under way (if any) is over. */
  flushed: () => Promise<void>;
  log: Logger;
}

/** How long lines of a destroyed app's name stamped before its destroy are still dropped. */
const TOMBSTONE_MS = 3_600_000;
/** Log folders written to this recently are never swept (see sweep). */
const RECENT_MS = 10_000;

export class AppPurge {
  /** Destroyed apps: destroy time (ms since the epoch). */
  private readonly destroyedAt = new Map<string, number>();
  private readonly log: Logger;

  constructor(private readonly options: AppPurgeOptions) {
    this.log = options.log.child({ component: 'stats.app-purge' });
  }

  /** True for a line or record of a destroyed app stamped before it was destroyed. */
  readonly isPurged = (app: string, atMs: number): boolean => {
    const at = this.destroyedAt.get(app);
    return at !== undefined && atMs <= at;
  };

  /** The app was destroyed at `atMs`: delete everything of it here. */
  async destroyed(app: string, atMs: number): Promise<void> {
    const now = Date.now();
    for (const [name, at] of this.destroyedAt) if (now - at > TOMBSTONE_MS) this.destroyedAt.delete(name);
    this.destroyedAt.set(app, Math.max(atMs, this.destroyedAt.get(app) ?? 0));
    const { store, aggregator, releases, pool } = this.options;
    aggregator.dropApp(app);
    releases.dropApp(app);
    await store.purge(app);
    await this.options.flushed();
    const minutes = await deleteRequestStats(pool, app, atMs);
    this.log.info({ app, minutes }, 'destroyed app purged');
  }

  /** After a snapshot: log folders of apps that no longer exist go, and chunks older than a re-created app. */
  async sweep(apps: readonly App[]): Promise<void> {
    const live = new Map(apps.map((a) => [a.name, a.createdAt]));
    const recent = Date.now() - RECENT_MS;
    for (const app of await this.options.store.listApps()) {
      const createdAt = live.get(app);
      if (createdAt === undefined) {
        // Written to a moment ago: an app created after the snapshot was taken (a destroy has its own event).
        if ((await this.options.store.lastWrittenMs(app)) > recent) continue;
        await this.options.store.purge(app);
        this.log.info({ app }, 'logs of an app that no longer exists deleted');
      } else {
        await this.options.store.purge(app, createdAt);
      }
    }
  }
}
