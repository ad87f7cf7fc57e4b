/** CURVE on the control socket: allowed keys get answers, unknown keys and plain-text clients get nothing. */
import { describe, expect, it } from 'vitest';
import { PierError } from '../../src/core/errors.js';
import { silentLogger } from '../../src/core/logger.js';
import { Nexus } from '../../src/nexus/nexus.js';
import { testConfig } from '../helpers/config.js';
import { ControlClient, SocketFactory, curveKeyPair } from '../../src/transport/index.js';
import { onCleanup } from '../helpers/daemons.js';
import { testDatabase } from '../helpers/postgres.js';

const dbUrl = await testDatabase();

function client(endpoint: string, sockets: SocketFactory): ControlClient {
  const c = new ControlClient({ endpoints: [endpoint], timeoutMs: 400, sockets });
  onCleanup(() => c.close());
  return c;
}

describe('CURVE and ZAP', () => {
  it('answers a client with an allowed key and refuses unknown or plain-text clients', async () => {
    const server = curveKeyPair();
    const nexusNode = curveKeyPair();
    const allowed = curveKeyPair();
    const stranger = curveKeyPair();
    const curve = { serverPublicKey: server.publicKey, serverSecretKey: server.secretKey, ...nexusNode };
    const keyring = new Map([[allowed.publicKey, { role: 'runner' as const, name: 'runner-curve' }]]);
    const nexus = new Nexus({ config: testConfig({ nexus: { id: 'nexus-curve' } }), dbUrl, log: silentLogger(), curve, keyring });
    onCleanup(() => nexus.stop());
    await nexus.start();
    const endpoint = nexus.endpoints!.control;
    const clientSockets = (keys: { publicKey: string; secretKey: string }) =>
      new SocketFactory({ maxMessageBytes: 1 << 20, curve: { serverPublicKey: server.publicKey, ...keys } });

    const pong = await client(endpoint, clientSockets(allowed)).call('ping', {});
    expect(pong.nexusId).toBe('nexus-curve');

    for (const sockets of [clientSockets(stranger), new SocketFactory({ maxMessageBytes: 1 << 20 })]) {
      const err = await client(endpoint, sockets).call('ping', {}).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PierError);
      expect((err as PierError).code).toBe('PIER_NEXUS_UNAVAILABLE');
    }
  });
});
