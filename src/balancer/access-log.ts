/**
 * Pushes one AccessMessage per request to the stats collectors without ever holding up a request (see
 * IntakePusher: bounded queue, bursts, drops counted). Over-long fields are cut rather than rejected.
 */
import type { Logger } from 'pino';
import { IntakePusher, type IntakePusherStats, type SocketFactory } from '../transport/index.js';
import type { AccessRecord } from './proxy.js';

export interface AccessLogOptions {
  /** PULL intake endpoints of every stats collector; empty means records are only counted. */
  endpoints: readonly string[];
  sockets: SocketFactory;
  balancerId: string;
  /** Records waiting to be sent; beyond this they are dropped. */
  maxQueue: number;
  log: Logger;
}

/** Field limits of AccessMessage. */
const MAX_PATH = 2048;
const MAX_HOST = 255;
const MAX_METHOD = 16;

/** The balancer's PUSH side of the stats intake. */
export class AccessLog {
  private readonly pusher: IntakePusher;

  constructor(private readonly options: AccessLogOptions) {
    this.pusher = new IntakePusher({ ...options, what: 'access records', log: options.log.child({ component: 'balancer.access-log' }) });
  }

  get stats(): IntakePusherStats {
    return this.pusher.stats;
  }

  start(): void {
    this.pusher.start();
  }

  /** Queues one record; never throws, never waits. */
  readonly record = (record: AccessRecord): void => {
    this.pusher.push({
      v: 1, type: 'access', app: record.app,
      host: record.host.length > MAX_HOST ? record.host.slice(0, MAX_HOST) : record.host,
      method: record.method.length > MAX_METHOD ? record.method.slice(0, MAX_METHOD) : record.method,
      path: record.path.length > MAX_PATH ? record.path.slice(0, MAX_PATH) : record.path,
      status: record.status, bytes: record.bytes, durationMs: Math.round(record.durationMs * 1000) / 1000,
      backend: record.backend, release: record.release, requestId: record.requestId, balancerId: this.options.balancerId, at: record.at,
    });
  };

  stop(flushMs = 200): Promise<void> {
    return this.pusher.stop(flushMs);
  }
}
