/**
 * Tells an app's owner when an instance hits its limits: polls each instance's cgroup counters (memory OOM kills,
 * refused forks) and pushes one clear line into the app's log (source 'pier'), at most one per limit per
 * instance every `quietMs`, counting what happened in between. uWSGI's own "worker died, killed by signal 9"
 * lines reach the log through the vassal's log file as usual.
 */
import type { Logger } from 'pino';
import type { LogMessage } from '../protocol/index.js';
import type { IntakePusher } from '../transport/index.js';
import type { Cgroups, LimitCounters } from './cgroups.js';

export interface LimitWatchOptions {
  cgroups: Cgroups;
  pusher: Pick<IntakePusher, 'push'>;
  /** Polling period. @default 1000 */
  pollMs?: number;
  /** Shortest time between two lines about the same limit of the same instance. @default 10000 */
  quietMs?: number;
  log: Logger;
}

interface Watched {
  app: string;
  /** Counts already reported (or seen at start). */
  seen: LimitCounters;
  lastLineAt: Record<keyof LimitCounters, number>;
}

export class LimitWatch {
  private readonly watched = new Map<string, Watched>();
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> | undefined;
  private readonly log: Logger;

  constructor(private readonly options: LimitWatchOptions) {
    this.log = options.log.child({ component: 'runner.limits' });
  }

  start(): void {
    this.timer = setInterval(() => void this.poll(), this.options.pollMs ?? 1000);
    this.timer.unref();
  }

  /** Follows `instance` of `app`; what its counters show already is not reported. */
  async watch(instance: string, app: string): Promise<void> {
    const seen = await this.options.cgroups.counters(instance);
    this.watched.set(instance, { app, seen, lastLineAt: { oomKills: 0, forksRefused: 0 } });
  }

  /** Reports what is new for `instance` (even within the quiet time), then forgets it. */
  async unwatch(instance: string): Promise<void> {
    await this.polling;
    const watched = this.watched.get(instance);
    if (watched) await this.check(instance, watched, true);
    this.watched.delete(instance);
  }

  /** Checks every instance once (the timer calls it). */
  poll(): Promise<void> {
    this.polling ??= (async () => {
      for (const [instance, watched] of [...this.watched]) {
        await this.check(instance, watched, false).catch((err) => this.log.warn({ err, instance }, 'cannot read cgroup counters'));
      }
    })().finally(() => {
      this.polling = undefined;
    });
    return this.polling;
  }

  private async check(instance: string, watched: Watched, isFinal: boolean): Promise<void> {
    const now = await this.options.cgroups.counters(instance);
    const quietMs = this.options.quietMs ?? 10_000;
    for (const kind of ['oomKills', 'forksRefused'] as const) {
      const added = now[kind] - watched.seen[kind];
      if (added <= 0) continue;
      if (!isFinal && Date.now() - watched.lastLineAt[kind] < quietMs) continue;
      watched.seen[kind] = now[kind];
      watched.lastLineAt[kind] = Date.now();
      const limits = await this.options.cgroups.currentLimits(instance);
      const line = kind === 'oomKills'
        ? `instance ${instance} reached its memory limit${limits ? ` of ${limits.memoryMb} MB` : ''}: the kernel killed ${added} of its processes (out of memory); uWSGI respawns killed workers. Use less memory, or ask an operator to raise it (pier limits:set memory=MB -a ${watched.app})`
        : `instance ${instance} reached its process limit${limits ? ` of ${limits.processes}` : ''}: ${added} fork()s refused; look for runaway forking, or ask an operator to raise it (pier limits:set processes=N -a ${watched.app})`;
      this.log.warn({ instance, app: watched.app, kind, added }, 'instance hit a limit');
      const message: LogMessage = { v: 1, type: 'log', app: watched.app, source: 'pier', origin: instance, line, at: Date.now() };
      this.options.pusher.push(message);
    }
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
