/**
 * The runner's integrity check: on an interval it compares the vassal files in its emperor's folder and the
 * emperor's processes (its stats socket) with the instances this runner holds, and repairs drift:
 * - a vassal file of a ready instance that is missing or differs from what the runner wrote is written again
 *   (the emperor starts, or reloads, it);
 * - a vassal file no instance of this runner owns is removed (the emperor stops it);
 * - a ready instance whose file is right but that the emperor has not run for two checks in a row is touched
 *   (the emperor starts it again).
 * Each repair is counted (sent in the heartbeat, shown by `pier nodes` and `pier status`) and logged. Starting and
 * stopping instances are left alone: their vassal is being written or removed right now.
 */
import type { Logger } from 'pino';
import type { Emperor, WriteVassalOptions } from './emperor.js';

/** A vassal the runner holds as ready, with the exact text it wrote. */
export interface HeldVassal {
  name: string;
  ini: string;
  options: WriteVassalOptions;
}

export interface VassalIntegrityOptions {
  emperor: Emperor;
  /** The ready instances' vassals. */
  held: () => HeldVassal[];
  /** True while `name` is an instance of this runner in any phase (a file being written is not extra). */
  isKnown: (name: string) => boolean;
  /** True while `name` is still held as ready (checked again right before and after a rewrite). */
  isHeld: (name: string) => boolean;
  intervalMs: number;
  log: Logger;
}

export type RepairKind = 'missing' | 'changed' | 'extra' | 'not running';

export class VassalIntegrity {
  /** Repairs made since start. */
  repairs = 0;
  /** Repairs by kind, since start. */
  readonly counts: Record<RepairKind, number> = { missing: 0, changed: 0, extra: 0, 'not running': 0 };
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  /** Ready vassals absent from the emperor's stats at the last check. */
  private absent = new Set<string>();
  private readonly log: Logger;

  constructor(private readonly options: VassalIntegrityOptions) {
    this.log = options.log.child({ component: 'runner.integrity' });
  }

  start(): void {
    this.timer = setInterval(() => {
      this.running ??= this.check().then(
        () => undefined,
        (err: Error) => this.log.warn({ err: err.message }, 'integrity check failed; will retry'),
      ).finally(() => (this.running = undefined));
    }, this.options.intervalMs);
  }

  /** One comparison and its repairs; resolves with the repairs it made. */
  async check(): Promise<number> {
    const { emperor } = this.options;
    let made = 0;
    const repaired = (name: string, kind: RepairKind): void => {
      made += 1;
      this.repairs += 1;
      this.counts[kind] += 1;
      this.log.warn({ vassal: name, drift: kind, repairs: this.repairs }, 'vassal drift repaired');
    };
    const healthy: string[] = [];
    for (const vassal of this.options.held()) {
      const text = await emperor.readVassal(vassal.name);
      if (text === vassal.ini) {
        healthy.push(vassal.name);
        continue;
      }
      if (!this.options.isHeld(vassal.name)) continue;
      await emperor.writeVassal(vassal.name, vassal.ini, vassal.options);
      // Stopped while we wrote: the stop's removal may have run before our rename; take the file away again.
      if (!this.options.isHeld(vassal.name)) {
        await emperor.removeVassal(vassal.name);
        continue;
      }
      repaired(vassal.name, text === undefined ? 'missing' : 'changed');
    }
    for (const name of await emperor.listVassals()) {
      if (this.options.isKnown(name)) continue;
      if (await emperor.removeVassal(name)) repaired(name, 'extra');
    }
    const status = await emperor.status().catch(() => undefined);
    if (status) {
      const running = new Set([...status.vassals.map((v) => v.name), ...status.blacklist.map((b) => b.name)]);
      const absent = new Set(healthy.filter((name) => !running.has(name)));
      for (const name of absent) {
        if (!this.absent.has(name) || !this.options.isHeld(name)) continue;
        await emperor.touchVassal(name);
        absent.delete(name);
        repaired(name, 'not running');
      }
      this.absent = absent;
    }
    return made;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }
}
