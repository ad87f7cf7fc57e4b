/**
 * ZAP handler (ZeroMQ RFC 27) for CURVE server sockets: admits a client only when its public key is on the
 * allow-list with a role the socket's ZAP domain lists (src/transport/zap-domains.ts). It must be bound in the
 * same ZeroMQ context before any CURVE server socket, and servers set `zapEnforceDomain` so a missing handler
 * denies everyone instead of admitting everyone.
 */
import * as zmq from 'zeromq';
import type { Logger } from 'pino';
import type { KeyIdentity } from './keys.js';
import { closeQuietly } from './sockets.js';
import { isAdmitted } from './zap-domains.js';

const ZAP_ENDPOINT = 'inproc://zeromq.zap.01';
const Z85_CHARS = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#';

/** Z85-encodes bytes (length a multiple of 4), as CURVE keys are written. */
export function z85Encode(data: Uint8Array): string {
  let out = '';
  for (let i = 0; i < data.length; i += 4) {
    let value = ((data[i]! << 24) | (data[i + 1]! << 16) | (data[i + 2]! << 8) | data[i + 3]!) >>> 0;
    let chunk = '';
    for (let j = 0; j < 5; j++) {
      chunk = Z85_CHARS[value % 85]! + chunk;
      value = Math.floor(value / 85);
    }
    out += chunk;
  }
  return out;
}

export class ZapHandler {
  readonly stats = { allowed: 0, denied: 0 };
  private readonly socket = new zmq.Router({ linger: 0 });
  private loop: Promise<void> | undefined;

  constructor(
    private readonly allowedKeys: ReadonlyMap<string, KeyIdentity>,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    await this.socket.bind(ZAP_ENDPOINT);
    this.loop = this.serve();
  }

  private async serve(): Promise<void> {
    try {
      for await (const frames of this.socket) {
        // [routing id, '', version, request id, domain, address, identity, mechanism, credentials…]
        // (The identity frame is the server socket's own routing id, not the client's: it says nothing about the peer.)
        const [routingId, , version, requestId, domainFrame, address, , mechanism, key] = frames;
        const clientKey = mechanism?.toString() === 'CURVE' && key?.length === 32 ? z85Encode(key) : '';
        const identity = clientKey === '' ? undefined : this.allowedKeys.get(clientKey);
        const domain = domainFrame?.toString() ?? '';
        const isAllowed = identity !== undefined && isAdmitted(domain, identity.role);
        if (isAllowed) this.stats.allowed += 1;
        else {
          this.stats.denied += 1;
          const reason = identity ? `role '${identity.role}' may not connect to '${domain}'` : 'key not allowed';
          this.log.warn({ peer: address?.toString(), domain, mechanism: mechanism?.toString(), clientKey, reason }, 'connection refused');
        }
        await this.socket.send([
          routingId!, Buffer.alloc(0), version ?? '1.0', requestId ?? '',
          isAllowed ? '200' : '400', isAllowed ? 'OK' : 'key not allowed', isAllowed ? `${identity.role}:${identity.name}` : '', Buffer.alloc(0),
        ]);
      }
    } catch (err) {
      if (!this.socket.closed) this.log.error({ err }, 'ZAP handler failed');
    }
  }

  async stop(): Promise<void> {
    // Unbind first: a closed socket gives up its inproc endpoint only when libzmq's reaper gets to it, and the
    // next handler in this process must be able to bind it at once.
    await this.socket.unbind(ZAP_ENDPOINT).catch(() => undefined);
    closeQuietly(this.socket);
    await this.loop;
  }
}

/** One ZAP handler per process (the inproc endpoint is per context); servers share it and add their keys. */
let shared: { handler: ZapHandler; keys: Map<string, KeyIdentity>; users: number; ready: Promise<void> } | undefined;
/** The last handler's stop while it unbinds the inproc endpoint: a new handler binds only after it. */
let stopping: Promise<void> = Promise.resolve();

/**
 * Starts (or joins) the process's ZAP handler with `keys` allowed (each with its role); call the returned
 * function to leave. A key already known keeps its first role.
 */
export async function acquireZap(keys: Iterable<readonly [string, KeyIdentity]>, log: Logger): Promise<() => Promise<void>> {
  if (!shared) {
    const all = new Map<string, KeyIdentity>();
    const handler = new ZapHandler(all, log.child({ component: 'transport.zap' }));
    shared = { handler, keys: all, users: 0, ready: stopping.then(() => handler.start()) };
  }
  const current = shared;
  for (const [key, identity] of keys) if (!current.keys.has(key)) current.keys.set(key, identity);
  current.users += 1;
  await current.ready;
  let isReleased = false;
  return async () => {
    if (isReleased) return;
    isReleased = true;
    current.users -= 1;
    if (current.users === 0 && shared === current) {
      shared = undefined;
      stopping = current.handler.stop();
      await stopping;
    }
  };
}
