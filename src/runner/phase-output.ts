/**
 * Sends the output of builds and release phases to the nexus (`release.output`), which records it as steps of
 * the deploy that `pier deploy` follows. Lines are batched (a send at most every `flushMs`, or at 100 lines) and
 * capped per instance, so a chatty build cannot flood the event log; sending is best-effort (a lost batch only
 * shortens what `pier deploy` shows: a failure's last lines are in the release's error anyway).
 */
import type { Logger } from 'pino';
import type { ControlClient } from '../transport/index.js';

/** Most lines sent per instance and phase; after that one line says how many were left out. */
const MAX_LINES = 2000;
const BATCH_LINES = 100;
const MAX_LINE_CHARS = 2000;

type Phase = 'build' | 'release';

interface Pending {
  lines: string[];
  sent: number;
  dropped: number;
  timer: NodeJS.Timeout | undefined;
  sending: Promise<void>;
}

export class PhaseOutput {
  private readonly pending = new Map<string, Pending>();

  constructor(private readonly control: ControlClient, private readonly runnerId: string, private readonly log: Logger, private readonly flushMs = 200) {}

  /** A line-sink for `instanceId`'s `phase`. */
  sink(instanceId: string, phase: Phase): (line: string) => void {
    return (line) => this.push(instanceId, phase, line);
  }

  private push(instanceId: string, phase: Phase, line: string): void {
    const key = `${instanceId}\0${phase}`;
    let entry = this.pending.get(key);
    if (!entry) {
      entry = { lines: [], sent: 0, dropped: 0, timer: undefined, sending: Promise.resolve() };
      this.pending.set(key, entry);
    }
    if (entry.sent + entry.lines.length >= MAX_LINES) {
      entry.dropped++;
      return;
    }
    entry.lines.push(line.length > MAX_LINE_CHARS ? `${line.slice(0, MAX_LINE_CHARS - 1)}…` : line);
    if (entry.lines.length >= BATCH_LINES) this.flushEntry(instanceId, phase, entry);
    else entry.timer ??= setTimeout(() => this.flushEntry(instanceId, phase, entry), this.flushMs);
  }

  private flushEntry(instanceId: string, phase: Phase, entry: Pending): void {
    clearTimeout(entry.timer);
    entry.timer = undefined;
    if (entry.lines.length === 0) return;
    const lines = entry.lines.splice(0);
    entry.sent += lines.length;
    entry.sending = entry.sending.then(() => this.send(instanceId, phase, lines));
  }

  private async send(instanceId: string, phase: Phase, lines: string[]): Promise<void> {
    try {
      await this.control.call('release.output', { nodeId: this.runnerId, instanceId, phase, lines }, { timeoutMs: 5000 });
    } catch (err) {
      this.log.warn({ instance: instanceId, phase, err: (err as Error).message }, 'cannot send build output');
    }
  }

  /** Sends what `instanceId` still has buffered (and how many lines were left out), and waits for it. */
  async flush(instanceId: string): Promise<void> {
    const waits: Promise<void>[] = [];
    for (const phase of ['build', 'release'] as const) {
      const key = `${instanceId}\0${phase}`;
      const entry = this.pending.get(key);
      if (!entry) continue;
      if (entry.dropped > 0) entry.lines.push(`(${entry.dropped} more lines not shown)`);
      this.flushEntry(instanceId, phase, entry);
      this.pending.delete(key);
      waits.push(entry.sending);
    }
    await Promise.all(waits);
  }
}
