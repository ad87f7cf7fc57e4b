/**
 * CURVE key files. One keys folder per daemon, holding only what that daemon needs:
 * - `node.key`: the daemon's own keypair (JSON `{ publicKey, secretKey }`, Z85), presented when it connects;
 * - `server.pub` / `stats.pub`: the public keys of the nexus and of the collectors, which clients pin;
 * - `server.key` (nexus machines only) / `stats.key` (collector machines only): the server keypairs they bind with;
 * - `allowed/<role>/<name>.pub` (servers only): the keys let in, one Z85 key per line, with the role of the
 *   folder and the node id of the file name (a runner key may only act as the runner it is named for).
 * `pier up` creates them (`ensureClusterKeys`).
 */
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../core/errors.js';
import { PEER_ROLES, type PeerRole } from '../protocol/index.js';
import { curveKeyPair, type CurveSettings } from './sockets.js';

interface KeyPair { publicKey: string; secretKey: string }

/** What an allowed key is: its role and the name (node id) of its file. */
export interface KeyIdentity {
  role: PeerRole;
  name: string;
}
/** Allowed Z85 public keys and what each one is. */
export type Keyring = ReadonlyMap<string, KeyIdentity>;

/** Which server keypair a process binds with: the nexus's, the collectors', or none (a pure client). */
export type CurveRole = 'nexus' | 'stats' | 'client';

const Z85_KEY = /^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/;
const NODE_NAME = /^[a-z0-9][a-z0-9.-]{0,62}$/;

/** Where each secret comes from, for the error when it is missing. */
const SECRET_SOURCES: Record<string, string> = {
  'node.key': 'start the daemon once with CURVE on to create it (ensureNodeKey), or let pier up make it',
  'server.key': 'copy keys/cluster/server.key from the machine where pier up made it (nexus machines only)',
  'stats.key': 'copy keys/cluster/stats.key from the machine where pier up made it (collector machines only)',
};

function readPair(file: string): KeyPair {
  const name = file.slice(file.lastIndexOf('/') + 1);
  if (!existsSync(file) && SECRET_SOURCES[name]) throw new ConfigError(`CURVE key file '${file}' is missing; ${SECRET_SOURCES[name]}`);
  try {
    const pair = JSON.parse(readFileSync(file, 'utf8')) as Partial<KeyPair>;
    if (typeof pair.publicKey === 'string' && Z85_KEY.test(pair.publicKey) && typeof pair.secretKey === 'string' && Z85_KEY.test(pair.secretKey)) {
      return { publicKey: pair.publicKey, secretKey: pair.secretKey };
    }
  } catch (err) {
    throw new ConfigError(`cannot read CURVE key file '${file}': ${(err as Error).message}`, { cause: err });
  }
  throw new ConfigError(`CURVE key file '${file}' must hold {"publicKey","secretKey"} as 40-character Z85 strings`);
}

/** Z85 keys of a `.pub` file: one per line; a line starting with # that is not a key is a comment. */
function readPublicKeys(file: string): string[] {
  const keys: string[] = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const key = line.trim();
    if (key === '' || key.startsWith('#') && !Z85_KEY.test(key)) continue; // '#' is also a Z85 character
    if (!Z85_KEY.test(key)) throw new ConfigError(`key file '${file}' has a line that is not a 40-character Z85 key`);
    keys.push(key);
  }
  return keys;
}

function readPublicKey(keysDir: string, name: string, hint: string): string {
  const file = join(keysDir, name);
  if (!existsSync(file)) throw new ConfigError(`CURVE key file '${file}' is missing; ${hint}`);
  const keys = readPublicKeys(file);
  if (keys.length !== 1) throw new ConfigError(`key file '${file}' must hold exactly one Z85 public key`);
  return keys[0]!;
}

/**
 * CURVE settings of one daemon. Only `role` 'nexus' reads `server.key` and only 'stats' reads `stats.key`; a
 * client (runner, balancer, tool) reads no secret but its own `node.key`.
 */
export function loadCurve(keysDir: string, role: CurveRole): CurveSettings {
  const node = readPair(join(keysDir, 'node.key'));
  const fix = 'copy it from the keys folder pier up made on the nexus machine';
  let serverSecretKey: string | undefined;
  let serverPublicKey: string;
  let statsPublicKey: string | undefined;
  if (role === 'nexus') {
    const server = readPair(join(keysDir, 'server.key'));
    serverSecretKey = server.secretKey;
    serverPublicKey = server.publicKey;
  } else {
    serverPublicKey = readPublicKey(keysDir, 'server.pub', fix);
  }
  if (role === 'stats') {
    const stats = readPair(join(keysDir, 'stats.key'));
    serverSecretKey = stats.secretKey;
    statsPublicKey = stats.publicKey;
  } else if (existsSync(join(keysDir, 'stats.pub'))) {
    statsPublicKey = readPublicKey(keysDir, 'stats.pub', fix);
  }
  return { serverPublicKey, ...(statsPublicKey ? { statsPublicKey } : {}), ...(serverSecretKey ? { serverSecretKey } : {}), publicKey: node.publicKey, secretKey: node.secretKey };
}

/**
 * The allowed keys under `allowed/<role>/*.pub`. Key files directly in `allowed/` (the layout before roles)
 * carry no role: they are not let in anywhere, and are returned in `unroled` so the daemon can say so.
 */
export function loadKeyring(keysDir: string): { keyring: Map<string, KeyIdentity>; unroled: string[] } {
  const dir = join(keysDir, 'allowed');
  const keyring = new Map<string, KeyIdentity>();
  const unroled: string[] = [];
  if (!existsSync(dir)) return { keyring, unroled };
  for (const entry of readdirSync(dir).sort()) {
    const path = join(dir, entry);
    if (entry.endsWith('.pub') && statSync(path).isFile()) {
      unroled.push(path);
      continue;
    }
    if (!statSync(path).isDirectory()) continue;
    if (!(PEER_ROLES as readonly string[]).includes(entry)) {
      throw new ConfigError(`'${path}' is not a role folder; allowed keys go in allowed/<role>/ with role one of ${PEER_ROLES.join(', ')}`);
    }
    for (const file of readdirSync(path).filter((f) => f.endsWith('.pub')).sort()) {
      const name = file.slice(0, -'.pub'.length);
      if (!NODE_NAME.test(name)) throw new ConfigError(`allowed key file '${join(path, file)}' must be named <node-id>.pub (lower-case letters, digits, dots, dashes)`);
      for (const key of readPublicKeys(join(path, file))) {
        const known = keyring.get(key);
        if (known && (known.role !== entry || known.name !== name)) {
          throw new ConfigError(`key in '${join(path, file)}' is also allowed as ${known.role} '${known.name}'; a key has one role: remove one of them`);
        }
        keyring.set(key, { role: entry as PeerRole, name });
      }
    }
  }
  return { keyring, unroled };
}

/** CURVE settings and allowed keys of a daemon that binds server sockets; all undefined with CURVE off. */
export function serverSecurity(
  security: { curve: boolean; keysDir: string }, role: 'nexus' | 'stats',
): { curve?: CurveSettings; keyring?: Keyring; unroled: string[] } {
  if (!security.curve) return { unroled: [] };
  const { keyring, unroled } = loadKeyring(security.keysDir);
  return { curve: loadCurve(security.keysDir, role), keyring, unroled };
}

/** What to do about key files without a role (logged with them at start). */
export const UNROLED_FIX = `move each to allowed/<role>/<node-id>.pub (role: ${PEER_ROLES.join(', ')})`;

/** One daemon `pier up` runs, and the role of its key. */
export interface DaemonKeys {
  name: string;
  role: PeerRole;
}

function writeOnce(file: string, text: string, mode: number): void {
  if (!existsSync(file)) writeFileSync(file, text, { mode });
}

/**
 * `pier up`'s keys, in `keysDir`:
 * - `cluster/`: the two server keypairs (nexus and collectors) and one node keypair per daemon (secrets, 0600);
 * - `allowed/<role>/<name>.pub`: the cluster's allow-list — pier up's own daemons, plus the keys of any machine
 *   you add (kept across restarts);
 * - `<name>/`: one folder per daemon with exactly what it loads — the nexus its server.key, a collector its
 *   stats.key, everyone the two public keys and its own node.key, servers a copy of the allow-list. These are
 *   rewritten at each start; existing keys are kept.
 * @returns the keys folder of each daemon, by name
 */
export function ensureClusterKeys(keysDir: string, daemons: readonly DaemonKeys[]): Map<string, string> {
  mkdirSync(keysDir, { recursive: true, mode: 0o700 });
  chmodSync(keysDir, 0o700);
  const master = join(keysDir, 'cluster');
  mkdirSync(master, { recursive: true, mode: 0o700 });
  migrateSharedKeys(keysDir, master);
  for (const name of ['server.key', 'stats.key']) writeOnce(join(master, name), JSON.stringify(curveKeyPair()), 0o600);
  const server = readPair(join(master, 'server.key'));
  const stats = readPair(join(master, 'stats.key'));
  const nodeKeys = new Map<string, KeyPair>();
  for (const { name, role } of daemons) {
    const file = join(master, `${name}.node.key`);
    writeOnce(file, JSON.stringify(curveKeyPair()), 0o600);
    const pair = readPair(file);
    nodeKeys.set(name, pair);
    mkdirSync(join(keysDir, 'allowed', role), { recursive: true, mode: 0o755 });
    writeFileSync(join(keysDir, 'allowed', role, `${name}.pub`), `${pair.publicKey}\n`, { mode: 0o644 });
  }
  const dirs = new Map<string, string>();
  for (const { name, role } of daemons) {
    const dir = join(keysDir, name);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { mode: 0o700 });
    writeFileSync(join(dir, 'node.key'), JSON.stringify(nodeKeys.get(name)), { mode: 0o600 });
    writeFileSync(join(dir, 'server.pub'), `${server.publicKey}\n`, { mode: 0o644 });
    writeFileSync(join(dir, 'stats.pub'), `${stats.publicKey}\n`, { mode: 0o644 });
    if (role === 'nexus') writeFileSync(join(dir, 'server.key'), JSON.stringify(server), { mode: 0o600 });
    if (role === 'stats') writeFileSync(join(dir, 'stats.key'), JSON.stringify(stats), { mode: 0o600 });
    if (role === 'nexus' || role === 'stats') cpSync(join(keysDir, 'allowed'), join(dir, 'allowed'), { recursive: true });
    dirs.set(name, dir);
  }
  return dirs;
}

/**
 * A keys folder made before roles held one server keypair for nexus and collectors alike, one node key shared by
 * every daemon and `allowed/local.pub` allowing it: keep the server keypair as the nexus's (clients that pinned
 * it still connect) and drop the shared node key and its allow-list entry.
 */
function migrateSharedKeys(keysDir: string, master: string): void {
  const legacyServer = join(keysDir, 'server.key');
  if (existsSync(legacyServer) && !existsSync(join(master, 'server.key'))) writeFileSync(join(master, 'server.key'), readFileSync(legacyServer), { mode: 0o600 });
  for (const old of ['server.key', 'node.key', join('allowed', 'local.pub')]) rmSync(join(keysDir, old), { force: true });
}

/**
 * Creates this daemon's `node.key` when it has none (a machine added by hand: allow the returned public key on
 * every nexus and collector as `allowed/<role>/<node-id>.pub`).
 * @returns the public key, and whether it was just created
 */
export function ensureNodeKey(keysDir: string): { publicKey: string; isNew: boolean } {
  const file = join(keysDir, 'node.key');
  if (existsSync(file)) return { publicKey: readPair(file).publicKey, isNew: false };
  mkdirSync(keysDir, { recursive: true, mode: 0o700 });
  const pair = curveKeyPair();
  writeFileSync(file, JSON.stringify(pair), { mode: 0o600, flag: 'wx' });
  return { publicKey: pair.publicKey, isNew: true };
}
