/**
 * CURVE key files: the cluster's server keypair (held by nexus replicas and collectors) and each node's own
 * keypair, as JSON `{ publicKey, secretKey }` (Z85) in the keys folder. `pier up` creates them.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
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

/** Creates the key files that are missing, and allows this machine's node key. */
export function ensureKeys(keysDir: string): void {
  mkdirSync(join(keysDir, 'allowed'), { recursive: true, mode: 0o700 });
  for (const name of ['server.key', 'node.key']) {
    const file = join(keysDir, name);
    if (!existsSync(file)) writeFileSync(file, JSON.stringify(curveKeyPair()), { mode: 0o600 });
  }
  const node = readPair(join(keysDir, 'node.key'));
  const allowed = join(keysDir, 'allowed', 'local.pub');
  if (!existsSync(allowed)) writeFileSync(allowed, `${node.publicKey}\n`);
}

/** Public keys allowed to connect: one Z85 key per line in every `allowed/*.pub` file (a line starting with # that is not a key is a comment). */
export function loadAllowedKeys(keysDir: string): Set<string> {
  const dir = join(keysDir, 'allowed');
  const keys = new Set<string>();
  if (!existsSync(dir)) return keys;
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.pub'))) {
    for (const line of readFileSync(join(dir, file), 'utf8').split('\n')) {
      const key = line.trim();
      if (key === '' || key.startsWith('#') && key.length !== 40) continue; // '#' is also a Z85 character
      if (key.length !== 40) throw new ConfigError(`allowed key file '${join(dir, file)}' has a line that is not a 40-character Z85 key`);
      keys.add(key);
    }
  }
  return keys;
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

/** CURVE settings and allowed client keys of a daemon that binds server sockets; both undefined with CURVE off. */
export function serverSecurity(security: { curve: boolean; keysDir: string }): { curve?: CurveSettings; allowedKeys?: Set<string> } {
  if (!security.curve) return {};
  return { curve: loadCurve(security.keysDir, true), allowedKeys: loadAllowedKeys(security.keysDir) };
}
