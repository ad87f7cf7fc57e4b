/**
 * Node roles on a real nexus with CURVE: each command answers only the roles it lists, a node key acts only as
 * the node it is named for, and a request without a valid key proof is refused — the attacker being a node
 * whose key is allowed (a compromised runner or balancer machine).
 */
import * as zmq from 'zeromq';
import { describe, expect, it } from 'vitest';
import { PierError } from '../../src/core/errors.js';
import { randomId } from '../../src/core/ids.js';
import { silentLogger } from '../../src/core/logger.js';
import { ensureAdmin, withTransaction } from '../../src/db/index.js';
import { Nexus } from '../../src/nexus/nexus.js';
import { decodeReply, encode } from '../../src/protocol/index.js';
import { acquireZap, closeQuietly, ControlClient, ControlServer, HeartbeatPublisher, SocketFactory } from '../../src/transport/index.js';
import { testConfig } from '../helpers/config.js';
import { testKeys, type KeyPair } from '../helpers/curve.js';
import { onCleanup } from '../helpers/daemons.js';
import { testDatabase, testPool } from '../helpers/postgres.js';
import { sleep, waitFor } from '../helpers/wait.js';

const dbUrl = await testDatabase();
const pool = testPool(dbUrl);
const adminToken = `pier_admin_${randomId(16)}`;
await withTransaction(pool, (tx) => ensureAdmin(tx, 'admin', adminToken));

const keys = testKeys();
const runner = keys.node('runner', 'ky-runner-1');
const otherRunner = keys.node('runner', 'ky-runner-2');
const balancer = keys.node('balancer', 'ky-balancer-1');
const operator = keys.node('operator', 'ky-tool');

async function startNexus(): Promise<Nexus> {
  const nexus = new Nexus({
    config: testConfig({ nexus: { id: `nexus-ky-${randomId()}` } }), dbUrl, log: silentLogger(),
    curve: keys.nexusCurve(keys.node('nexus', 'ky-nexus')), keyring: keys.keyring,
  });
  onCleanup(() => nexus.stop());
  await nexus.start();
  return nexus;
}

function client(nexus: Nexus, key: KeyPair | SocketFactory): ControlClient {
  const sockets = 'publicKey' in key ? keys.sockets(key) : key;
  const c = new ControlClient({ endpoints: [nexus.endpoints!.control], timeoutMs: 1000, sockets });
  onCleanup(() => c.close());
  return c;
}

async function refusal(call: Promise<unknown>): Promise<PierError> {
  const err = await call.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(PierError);
  return err as PierError;
}

describe('control command roles', () => {
  it('refuses owner.create from a runner key even with the admin token, and serves the runner its own commands', async () => {
    const nexus = await startNexus();
    const asRunner = client(nexus, runner);
    const err = await refusal(asRunner.call('owner.create', { token: adminToken, name: `ky-${randomId()}` }));
    expect(err.code).toBe('PIER_FORBIDDEN');
    expect(err.message).toBe("'owner.create' may be called by operator keys only; the key of runner 'ky-runner-1' may not");

    const registered = await asRunner.call('node.register', { nodeId: 'ky-runner-1', kind: 'runner', address: '127.0.0.1' });
    expect(registered.nodeId).toBe('ky-runner-1');
    expect((await asRunner.call('instance.report', { nodeId: 'ky-runner-1', instanceId: 'ky-none', state: 'stopped' })).applied).toBe(false);
    expect((await asRunner.call('snapshot', {})).version).toBeGreaterThanOrEqual(0);

    // The operator key may: the refusal above was the role, not the token.
    const created = await client(nexus, operator).call('owner.create', { token: adminToken, name: `ky-${randomId()}` });
    expect(created.token).toMatch(/^pier_/);
  });

  it('refuses instance.report and artifact.fetch from a balancer key', async () => {
    const nexus = await startNexus();
    const asBalancer = client(nexus, balancer);
    for (const call of [
      asBalancer.call('instance.report', { nodeId: 'ky-balancer-1', instanceId: 'ky-none', state: 'ready', port: 20000 }),
      asBalancer.call('artifact.fetch', { sha256: '0'.repeat(64), offset: 0, length: 1 }),
    ]) {
      const err = await refusal(call);
      expect(err.code).toBe('PIER_FORBIDDEN');
      expect(err.message).toMatch(/^'(instance\.report|artifact\.fetch)' may be called by runner keys only; the key of balancer 'ky-balancer-1' may not$/);
    }
    expect((await asBalancer.call('node.register', { nodeId: 'ky-balancer-1', kind: 'balancer', address: '127.0.0.1' })).nodeId).toBe('ky-balancer-1');
  });

  it('lets a runner key act only as the runner it is named for', async () => {
    const nexus = await startNexus();
    const asRunner = client(nexus, runner);
    const asOther = await refusal(asRunner.call('instance.report', { nodeId: 'ky-runner-2', instanceId: 'ky-none', state: 'failed', error: 'x' }));
    expect(asOther.code).toBe('PIER_FORBIDDEN');
    expect(asOther.message).toBe("the key of runner 'ky-runner-1' may only act as node 'ky-runner-1', not 'ky-runner-2'");
    const asBalancer = await refusal(asRunner.call('node.register', { nodeId: 'ky-runner-1', kind: 'balancer', address: '127.0.0.1' }));
    expect(asBalancer.message).toBe("the key of runner 'ky-runner-1' may not register as a balancer");
  });

  it('refuses a request from an allowed key that carries no proof, or the proof of another key', async () => {
    const nexus = await startNexus();
    const dealer = new zmq.Dealer({ linger: 0, ...{ curveServerKey: keys.server.publicKey, curvePublicKey: runner.publicKey, curveSecretKey: runner.secretKey } });
    onCleanup(async () => closeQuietly(dealer));
    dealer.connect(nexus.endpoints!.control);
    const ask = async (frames: Buffer[]) => {
      await dealer.send(frames);
      const [reply] = await dealer.receive();
      return decodeReply(reply!);
    };
    const ping = encode({ v: 1, type: 'ping', id: 'ky-1' });
    const bare = await ask([ping]);
    expect(bare).toMatchObject({ type: 'error', code: 'PIER_FORBIDDEN' });
    expect(bare.type === 'error' && bare.message).toBe("'ping' was not signed by an allowed key; the client must send its key proof (Pier's ControlClient does)");
    // A proof made with another runner's key, over the same CURVE connection: the MAC does not verify.
    const stolen = Buffer.concat([Buffer.from(otherRunner.publicKey, 'latin1'), Buffer.alloc(32)]);
    expect(await ask([stolen, encode({ v: 1, type: 'ping', id: 'ky-2' })])).toMatchObject({ type: 'error', code: 'PIER_FORBIDDEN' });
    // Our own proof of another payload does not cover this one.
    const sockets = keys.sockets(runner);
    const other = encode({ v: 1, type: 'ping', id: 'ky-other' });
    expect(await ask([sockets.proof(other)!, encode({ v: 1, type: 'ping', id: 'ky-3' })])).toMatchObject({ type: 'error', code: 'PIER_FORBIDDEN' });
    expect(await ask([sockets.proof(ping)!, ping])).toMatchObject({ type: 'reply', re: 'ky-1' });
  });

  it("ignores a runner's heartbeats for another node, and keeps its own", async () => {
    const nexus = await startNexus();
    const beat = (nodeId: string, key: KeyPair) => {
      const publisher = new HeartbeatPublisher({ nodeId, kind: 'runner', endpoints: [nexus.endpoints!.heartbeats], intervalMs: 20, sockets: keys.sockets(key) });
      publisher.start();
      onCleanup(async () => publisher.stop());
    };
    beat('ky-runner-2', runner); // forged: runner-1's key speaking for runner-2
    beat('ky-runner-1', runner);
    await waitFor(() => nexus.heartbeats!.lastSeen.has('ky-runner-1'), { name: 'own heartbeat seen' });
    await sleep(300); // ~15 forged beats sent meanwhile
    expect(nexus.heartbeats!.lastSeen.has('ky-runner-2')).toBe(false);
    expect(nexus.heartbeats!.stats.invalid).toBeGreaterThan(5);
  });

  it("gives a runner only the specs of instances placed on it (a spec carries the app's config vars)", async () => {
    const release = await acquireZap(keys.keyring, silentLogger());
    onCleanup(release);
    const serverSockets = new SocketFactory({ maxMessageBytes: 1 << 20, curve: keys.nexusCurve(keys.node('nexus', 'ky-nexus-spec')) });
    const router = serverSockets.router('pier.control');
    onCleanup(async () => closeQuietly(router));
    await router.bind('tcp://127.0.0.1:*');
    const spec = (instanceId: string, runnerId: string) => ({
      instanceId, app: 'ky-app', release: 1, sha256: 'a'.repeat(64), sizeBytes: 1, processType: 'web', config: { SECRET: 's3cret' }, runnerId, state: 'assigned',
    });
    const server = new ControlServer(router, {
      'instance.spec': async (r) => spec(r.instanceId, r.instanceId === 'ky-mine' ? 'ky-runner-1' : 'ky-runner-2'),
    }, 1 << 20, silentLogger(), { serverSecretKey: keys.server.secretKey, keyring: keys.keyring });
    server.start();
    const asRunner = new ControlClient({ endpoints: [router.lastEndpoint!], timeoutMs: 1000, sockets: keys.sockets(runner) });
    onCleanup(() => asRunner.close());
    expect((await asRunner.call('instance.spec', { instanceId: 'ky-mine' })).config).toEqual({ SECRET: 's3cret' });
    const err = await refusal(asRunner.call('instance.spec', { instanceId: 'ky-theirs' }));
    expect(err.code).toBe('PIER_FORBIDDEN');
    expect(err.message).toBe("instance 'ky-theirs' is not placed on runner 'ky-runner-1'");
  });
});
