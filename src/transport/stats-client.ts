/**
 * Asks the stats collectors: `logs.tail` goes to every collector (each holds the share of an app's lines its
 * PULL received) and the answers are merged in time order; `follow` subscribes to every collector's live tail.
 * A query opens one short-lived DEALER per collector: the API asks rarely, and a fresh socket never carries a
 * reply lost by an earlier call.
 */
import type { Logger } from 'pino';
import { PierError } from '../core/errors.js';
import { newRequestId } from '../core/ids.js';
import {
  LogLines, STATS_QUERIES, check, decode, decodeReply, encode, errorFromReply, tailTopic,
  type StatsQueryBody, type StatsQueryResult, type StatsQueryType,
} from '../protocol/index.js';
import { closeQuietly, type SocketFactory } from './sockets.js';

export interface StatsClientOptions {
  /** Query ROUTER and live tail PUB of every collector. */
  collectors: ReadonlyArray<{ query: string; tail: string }>;
  sockets: SocketFactory;
  /** Time a collector gets to answer. */
  timeoutMs: number;
  log: Logger;
}

/** What every collector answered: their results, and the collectors that did not. */
export interface Gathered<T> {
  results: T[];
  failures: string[];
}

/** The ISO timestamp every stored line starts with sorts as text. */
const TIMESTAMP_CHARS = 24;

export class StatsClient {
  constructor(private readonly options: StatsClientOptions) {}

  get isConfigured(): boolean {
    return this.options.collectors.length > 0;
  }

  /** The last `lines` lines of `app` across every collector, oldest first. @throws PIER_UNAVAILABLE when none answered */
  async tail(app: string, lines: number): Promise<{ lines: string[]; failures: string[] }> {
    const { results, failures } = await this.gather('logs.tail', { app, lines });
    if (results.length === 0) throw unavailable(failures);
    const merged = results.length === 1 ? results[0]!.lines : results.flatMap((r) => r.lines).sort(byTimestamp);
    return { lines: merged.slice(-lines), failures };
  }

  /**
   * Calls `onLines` with each batch of new lines of `app` published by any collector, until the returned
   * function is called.
   */
  follow(app: string, onLines: (lines: string[]) => void): () => void {
    const socket = this.options.sockets.forStats().subscriber('client');
    const topic = tailTopic(app);
    socket.subscribe(topic);
    for (const { tail } of this.options.collectors) socket.connect(tail);
    void (async () => {
      try {
        for await (const [frameTopic, payload] of socket) {
          // SUB filters by prefix: 'log.web' would also match 'log.web-2'.
          if (!frameTopic || !payload || frameTopic.toString() !== topic) continue;
          try {
            const message = decode(payload, LogLines, this.options.sockets.maxMessageBytes);
            if (message.app === app) onLines(message.lines);
          } catch (err) {
            this.options.log.warn({ reason: (err as Error).message }, 'invalid live log message dropped');
          }
        }
      } catch {
        // Closed by the caller.
      }
    })();
    return () => closeQuietly(socket);
  }

  /** Sends one query to every collector at once and waits for each answer or its time-out. */
  async gather<T extends StatsQueryType>(type: T, body: StatsQueryBody<T>): Promise<Gathered<StatsQueryResult<T>>> {
    const settled = await Promise.allSettled(this.options.collectors.map(({ query }) => this.ask(query, type, body)));
    const results: Array<StatsQueryResult<T>> = [];
    const failures: string[] = [];
    settled.forEach((outcome, i) => {
      if (outcome.status === 'fulfilled') results.push(outcome.value);
      else failures.push(`${this.options.collectors[i]!.query}: ${(outcome.reason as Error).message}`);
    });
    return { results, failures };
  }

  private async ask<T extends StatsQueryType>(endpoint: string, type: T, body: StatsQueryBody<T>): Promise<StatsQueryResult<T>> {
    const { timeoutMs } = this.options;
    const sockets = this.options.sockets.forStats();
    const socket = sockets.dealer(timeoutMs);
    let timer: NodeJS.Timeout | undefined;
    try {
      socket.connect(endpoint);
      const id = newRequestId();
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no reply in ${timeoutMs} ms`)), timeoutMs);
      });
      const exchange = (async () => {
        await socket.send(encode({ ...body, v: 1, type, id }));
        for (;;) {
          const frames = await socket.receive();
          const reply = decodeReply(frames[frames.length - 1]!, sockets.maxMessageBytes);
          if (reply.re !== id) continue;
          if (reply.type === 'error') throw errorFromReply(reply);
          return check(STATS_QUERIES[type].result, reply.result, `'${type}' result`) as StatsQueryResult<T>;
        }
      })();
      exchange.catch(() => undefined); // settled by the race below; a late rejection is not unhandled
      return await Promise.race([exchange, deadline]);
    } finally {
      clearTimeout(timer);
      closeQuietly(socket);
    }
  }
}

function byTimestamp(a: string, b: string): number {
  const ta = a.slice(0, TIMESTAMP_CHARS);
  const tb = b.slice(0, TIMESTAMP_CHARS);
  return ta < tb ? -1 : ta > tb ? 1 : 0;
}

function unavailable(failures: string[]): PierError {
  return new PierError('PIER_STATS_UNAVAILABLE', `no stats collector answered (${failures.join('; ') || 'none configured'}); check 'pier status'`);
}
