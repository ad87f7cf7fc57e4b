/**
 * Misbehaving ZeroMQ peers for transport tests: a ROUTER that never answers, and a relay that forwards requests
 * to a real nexus but throws its replies away. Both are real sockets on loopback, closed after the test.
 */
import * as zmq from 'zeromq';
import { closeQuietly } from '../../src/transport/index.js';
import { onCleanup } from './daemons.js';

export interface SilentPeer {
  endpoint: string;
  /** Requests it has read (and ignored). */
  received: number;
}

/** A ROUTER that accepts connections and reads every request, but never replies. */
export async function silentRouter(): Promise<SilentPeer> {
  const router = new zmq.Router({ linger: 0 });
  await router.bind('tcp://127.0.0.1:*');
  const peer: SilentPeer = { endpoint: router.lastEndpoint!, received: 0 };
  const loop = (async () => {
    try {
      for await (const _frames of router) peer.received += 1;
    } catch {
      // closed by the cleanup below
    }
  })();
  onCleanup(async () => {
    closeQuietly(router);
    await loop;
  });
  return peer;
}

export interface LossyRelay {
  endpoint: string;
  /** Requests forwarded to the target. */
  forwarded: number;
  /** Replies the target sent back, all dropped. */
  dropped: number;
}

/**
 * A ROUTER → DEALER relay in front of `target` that forwards every request payload and drops every reply: the
 * target applies the request, the caller hears nothing.
 */
export async function lossyRelay(target: string): Promise<LossyRelay> {
  const front = new zmq.Router({ linger: 0 });
  await front.bind('tcp://127.0.0.1:*');
  const back = new zmq.Dealer({ linger: 0 });
  back.connect(target);
  const relay: LossyRelay = { endpoint: front.lastEndpoint!, forwarded: 0, dropped: 0 };
  const forward = (async () => {
    try {
      for await (const frames of front) {
        relay.forwarded += 1;
        await back.send(frames[frames.length - 1]!);
      }
    } catch {
      // closed by the cleanup below
    }
  })();
  const drop = (async () => {
    try {
      for await (const _frames of back) relay.dropped += 1;
    } catch {
      // closed by the cleanup below
    }
  })();
  onCleanup(async () => {
    closeQuietly(front);
    closeQuietly(back);
    await Promise.all([forward, drop]);
  });
  return relay;
}
