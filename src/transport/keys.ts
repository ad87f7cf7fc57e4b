/**
 * CURVE key files: the cluster's server keypair (held by nexus replicas and collectors) and each node's own
 * keypair, as JSON `{ publicKey, secretKey }` (Z85) in the keys folder. `pier up` creates them.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../core/errors.js';
import { curveKeyPair, type CurveSettings } from './sockets.js';

interface KeyPair { publicKey: string; secretKey: string }

function readPair(file: string): KeyPair {
  try {
    const pair = JSON.parse(readFileSync(file, 'utf8')) as Partial<KeyPair>;
    if (typeof pair.publicKey === 'string' && pair.publicKey.length === 40 && typeof pair.secretKey === 'string' && pair.secretKey.length === 40) {
      return { publicKey: pair.publicKey, secretKey: pair.secretKey };
    }
  } catch (err) {
    throw new ConfigError(`cannot read CURVE key file '${file}': ${(err as Error).message}`, { cause: err });
  }
  throw new ConfigError(`CURVE key file '${file}' must hold {"publicKey","secretKey"} as 40-character Z85 strings`);
}

/** Creates the key files that are missing. */
export function ensureKeys(keysDir: string): void {
  mkdirSync(keysDir, { recursive: true, mode: 0o700 });
  for (const name of ['server.key', 'node.key']) {
    const file = join(keysDir, name);
    if (!existsSync(file)) writeFileSync(file, JSON.stringify(curveKeyPair()), { mode: 0o600 });
  }
}

/** CURVE settings for this process; servers also get the server secret key. */
export function loadCurve(keysDir: string, isServer: boolean): CurveSettings {
  const server = readPair(join(keysDir, 'server.key'));
  const node = readPair(join(keysDir, 'node.key'));
  return {
    serverPublicKey: server.publicKey,
    ...(isServer ? { serverSecretKey: server.secretKey } : {}),
    publicKey: node.publicKey,
    secretKey: node.secretKey,
  };
}
