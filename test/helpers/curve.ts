/** CURVE keys for tests: the two server keypairs, node keys with roles, and the settings each daemon loads. */
import { curveKeyPair, SocketFactory, type CurveSettings, type KeyIdentity } from '../../src/transport/index.js';
import type { PeerRole } from '../../src/protocol/index.js';

export interface KeyPair {
  publicKey: string;
  secretKey: string;
}

export interface TestKeys {
  /** The nexus's server keypair and the collectors'. */
  server: KeyPair;
  stats: KeyPair;
  /** Allowed keys with their roles (what the servers load from allowed/<role>/<name>.pub). */
  keyring: Map<string, KeyIdentity>;
  /** Adds an allowed node key of `role` named `name` (its node id). */
  node(role: PeerRole, name: string): KeyPair;
  /** What a nexus loads: its node key and the server secret. */
  nexusCurve(node: KeyPair): CurveSettings;
  /** What a collector loads: its node key and the collectors' secret. */
  statsCurve(node: KeyPair): CurveSettings;
  /** What a client (runner, balancer, tool) loads: its node key and the two public keys, no secret. */
  clientCurve(node: KeyPair): CurveSettings;
  /** A socket factory for a client with `node`'s key. */
  sockets(node: KeyPair): SocketFactory;
}

export function testKeys(): TestKeys {
  const server = curveKeyPair();
  const stats = curveKeyPair();
  const keyring = new Map<string, KeyIdentity>();
  const pub = { serverPublicKey: server.publicKey, statsPublicKey: stats.publicKey };
  const keys: TestKeys = {
    server, stats, keyring,
    node(role, name) {
      const pair = curveKeyPair();
      keyring.set(pair.publicKey, { role, name });
      return pair;
    },
    nexusCurve: (node) => ({ ...pub, serverSecretKey: server.secretKey, ...node }),
    statsCurve: (node) => ({ ...pub, serverSecretKey: stats.secretKey, ...node }),
    clientCurve: (node) => ({ ...pub, ...node }),
    sockets: (node) => new SocketFactory({ maxMessageBytes: 1 << 20, curve: keys.clientCurve(node) }),
  };
  return keys;
}
