/**
 * The runner takes session commands only from a nexus: its DEALER to each sessions endpoint pins the nexus's CURVE
 * server key, so a server holding any other key (an impostor on the nexus's address, or on an address the runner
 * was pointed at) never completes the handshake, never sees a hello, and cannot start anything. Real sockets and
 * the runner's own OneOffs; the impostor plays the attacker.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as zmq from 'zeromq';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/logger.js';
import { decodeToNexus, encode } from '../../src/protocol/index.js';
import { ControlClient, SocketFactory, curveKeyPair } from '../../src/transport/index.js';
import { OneOffs } from '../../src/runner/one-offs.js';
import { ReleaseCache } from '../../src/runner/release-cache.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A CURVE server ROUTER with `secretKey` that admits any client key (no ZAP handler: an attacker's server). */
async function server(secretKey: string): Promise<zmq.Router> {
  const router = new zmq.Router({ linger: 0, curveServer: true, curveSecretKey: secretKey });
  await router.bind('tcp://127.0.0.1:*');
  cleanups.push(() => router.close());
  return router;
}

/** The first message `router` receives within `ms`, or undefined. */
async function firstMessage(router: zmq.Router, ms: number): Promise<Buffer[] | undefined> {
  router.receiveTimeout = ms;
  try {
    return await router.receive();
  } catch {
    return undefined;
  }
}

describe('runner one-off sessions', () => {
  it('never talks to a sessions server that does not hold the nexus key', async () => {
    const nexus = curveKeyPair();
    const impostor = curveKeyPair();
    const runner = curveKeyPair();
    const real = await server(nexus.secretKey);
    const fake = await server(impostor.secretKey);
    const dir = mkdtempSync(join(tmpdir(), 'pier-rn-keys-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const sockets = new SocketFactory({ maxMessageBytes: 1024 * 1024, curve: { serverPublicKey: nexus.publicKey, publicKey: runner.publicKey, secretKey: runner.secretKey } });
    const control = new ControlClient({ endpoints: [real.lastEndpoint!], timeoutMs: 200, sockets });
    cleanups.push(() => control.close());
    const oneOffs = new OneOffs({
      runnerId: 'runner-rn', endpoints: [fake.lastEndpoint!, real.lastEndpoint!], sockets, releases: new ReleaseCache({ dir, control, pipArgs: [], buildTimeoutMs: 1000, log: silentLogger() }),
      limits: { memoryMb: 64, processes: 16, openFiles: 64, cpuShares: 1024, requestTimeoutMs: 1000 }, graceMs: 100, helloIntervalMs: 100, deadAfterMs: 1500, log: silentLogger(),
    });
    oneOffs.start();
    cleanups.push(() => oneOffs.close());

    // The nexus key holder hears the runner's hello (with its proof frame)...
    const hello = await firstMessage(real, 3000);
    expect(hello).toBeDefined();
    expect(decodeToNexus(hello![hello!.length - 1]!)).toMatchObject({ type: 'session.hello', nodeId: 'runner-rn' });
    // ...the impostor hears nothing, so it has no routing id to send a start to, and a guess goes nowhere.
    expect(await firstMessage(fake, 1000)).toBeUndefined();
    const start = encode({
      v: 1, type: 'session.start', session: 'rn-impostor-0001',
      spec: { app: 'rn-x', release: 1, sha256: '0'.repeat(64), sizeBytes: 0, config: {}, dyno: 'run.1', command: ['id'], pty: null, detach: true, timeoutMs: 10_000 },
    });
    fake.mandatory = true;
    fake.sendTimeout = 500;
    await expect(fake.send([hello![0]!, start])).rejects.toThrow();
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(oneOffs.running).toEqual([]);
  }, 15_000);
});
