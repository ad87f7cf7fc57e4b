/**
 * Key files: each daemon loads only its own folder, clients never read a server secret, allowed keys carry the
 * role of their folder, and pier up's per-daemon folders give runners and balancers no secret but their own.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PierError } from '../../src/core/errors.js';
import { curveKeyPair, ensureClusterKeys, ensureNodeKey, loadCurve, loadKeyring } from '../../src/transport/index.js';
import { searchableTempDir } from '../helpers/data-dir.js';

const root = searchableTempDir('pier-ky-keys-');
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
function folder(files: Record<string, string>): string {
  const dir = join(root, `k${n++}`);
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  return dir;
}

const server = curveKeyPair();
const stats = curveKeyPair();
const node = curveKeyPair();

describe('loadCurve', () => {
  it('reads no secret but its own node key for a client, even when secret files sit next to it', () => {
    // Unreadable as JSON: loading either one would throw.
    const dir = folder({ 'node.key': JSON.stringify(node), 'server.pub': `${server.publicKey}\n`, 'stats.pub': `${stats.publicKey}\n`, 'server.key': 'not json', 'stats.key': 'not json' });
    const curve = loadCurve(dir, 'client');
    expect(curve).toEqual({ serverPublicKey: server.publicKey, statsPublicKey: stats.publicKey, publicKey: node.publicKey, secretKey: node.secretKey });
    expect(curve.serverSecretKey).toBeUndefined();
    // A client folder as pier up hands it out has no secret file at all.
    const bare = folder({ 'node.key': JSON.stringify(node), 'server.pub': `${server.publicKey}\n` });
    expect(loadCurve(bare, 'client').serverSecretKey).toBeUndefined();
  });

  it("gives a nexus the server secret and a collector the collectors' secret, never the other's", () => {
    const nexusDir = folder({ 'node.key': JSON.stringify(node), 'server.key': JSON.stringify(server), 'stats.pub': `${stats.publicKey}\n`, 'stats.key': 'not json' });
    expect(loadCurve(nexusDir, 'nexus')).toMatchObject({ serverSecretKey: server.secretKey, serverPublicKey: server.publicKey, statsPublicKey: stats.publicKey });
    const statsDir = folder({ 'node.key': JSON.stringify(node), 'stats.key': JSON.stringify(stats), 'server.pub': `${server.publicKey}\n`, 'server.key': 'not json' });
    expect(loadCurve(statsDir, 'stats')).toMatchObject({ serverSecretKey: stats.secretKey, serverPublicKey: server.publicKey, statsPublicKey: stats.publicKey });
  });

  it('names the missing public key file and the fix', () => {
    const dir = folder({ 'node.key': JSON.stringify(node) });
    expect(() => loadCurve(dir, 'client')).toThrow(`CURVE key file '${join(dir, 'server.pub')}' is missing; copy it from the keys folder pier up made on the nexus machine`);
    const collector = folder({ 'node.key': JSON.stringify(node), 'server.pub': `${server.publicKey}\n` });
    expect(() => loadCurve(collector, 'stats')).toThrow(`CURVE key file '${join(collector, 'stats.key')}' is missing; copy keys/cluster/stats.key from the machine where pier up made it (collector machines only)`);
  });
});

describe('loadKeyring', () => {
  it('gives each key the role of its folder and the node id of its file, and sets role-less files apart', () => {
    const a = curveKeyPair().publicKey;
    const b = curveKeyPair().publicKey;
    const legacy = curveKeyPair().publicKey;
    const dir = folder({ 'allowed/runner/runner-7.pub': `# runner 7\n${a}\n`, 'allowed/balancer/balancer-1.pub': `${b}\n`, 'allowed/old.pub': `${legacy}\n` });
    const { keyring, unroled } = loadKeyring(dir);
    expect([...keyring]).toEqual([[b, { role: 'balancer', name: 'balancer-1' }], [a, { role: 'runner', name: 'runner-7' }]]);
    expect(keyring.has(legacy)).toBe(false);
    expect(unroled).toEqual([join(dir, 'allowed', 'old.pub')]);
  });

  it('refuses an unknown role folder and a key allowed under two roles, in one line', () => {
    const a = curveKeyPair().publicKey;
    const bad = folder({ 'allowed/admin/x.pub': `${a}\n` });
    expect(() => loadKeyring(bad)).toThrow(`'${join(bad, 'allowed', 'admin')}' is not a role folder; allowed keys go in allowed/<role>/ with role one of nexus, runner, balancer, stats, operator`);
    const twice = folder({ 'allowed/runner/r1.pub': `${a}\n`, 'allowed/operator/tool.pub': `${a}\n` });
    const err = (() => { try { loadKeyring(twice); } catch (e) { return e as PierError; } return undefined; })();
    expect(err?.code).toBe('PIER_CONFIG');
    expect(err?.message).toMatch(/is also allowed as (runner 'r1'|operator 'tool'); a key has one role: remove one of them$/);
  });
});

describe('ensureNodeKey', () => {
  it('creates a missing node key once (0600) and keeps it after', () => {
    const dir = join(root, 'fresh-node');
    const first = ensureNodeKey(dir);
    expect(first.isNew).toBe(true);
    expect(statSync(join(dir, 'node.key')).mode & 0o777).toBe(0o600);
    expect(ensureNodeKey(dir)).toEqual({ publicKey: first.publicKey, isNew: false });
  });
});

describe('ensureClusterKeys', () => {
  it("gives each daemon exactly its own files: the server secret only to the nexus, the collectors' only to collectors", () => {
    const keysDir = join(root, 'cluster-keys');
    // A folder from before roles: one server key for all, one shared node key, a role-less allow-list.
    mkdirSync(join(keysDir, 'allowed'), { recursive: true });
    writeFileSync(join(keysDir, 'server.key'), JSON.stringify(server));
    writeFileSync(join(keysDir, 'node.key'), JSON.stringify(node));
    writeFileSync(join(keysDir, 'allowed', 'local.pub'), `${node.publicKey}\n`);
    const daemons = [
      { name: 'nexus-1', role: 'nexus' }, { name: 'stats-1', role: 'stats' }, { name: 'balancer-1', role: 'balancer' },
      { name: 'runner-1', role: 'runner' }, { name: 'operator', role: 'operator' },
    ] as const;
    const dirs = ensureClusterKeys(keysDir, daemons);
    const files = (name: string) => readdirSync(dirs.get(name)!).sort();
    expect(files('nexus-1')).toEqual(['allowed', 'node.key', 'server.key', 'server.pub', 'stats.pub']);
    expect(files('stats-1')).toEqual(['allowed', 'node.key', 'server.pub', 'stats.key', 'stats.pub']);
    for (const client of ['balancer-1', 'runner-1', 'operator']) expect(files(client)).toEqual(['node.key', 'server.pub', 'stats.pub']);
    // The nexus keeps the old server key, so clients that pinned it still connect; the old shared files are gone.
    expect(loadCurve(dirs.get('nexus-1')!, 'nexus').serverSecretKey).toBe(server.secretKey);
    for (const old of ['node.key', 'server.key', 'allowed/local.pub']) expect(existsSync(join(keysDir, old))).toBe(false);
    const runner = loadCurve(dirs.get('runner-1')!, 'client');
    const collector = loadCurve(dirs.get('stats-1')!, 'stats');
    expect(runner.serverPublicKey).toBe(server.publicKey);
    expect(runner.statsPublicKey).toBe(collector.statsPublicKey);
    expect(collector.serverSecretKey).not.toBe(server.secretKey);
    // Every daemon has its own node key, allowed under its role and name on both servers.
    const publicKeys = daemons.map((d) => loadCurve(dirs.get(d.name)!, 'client' as const).publicKey);
    expect(new Set(publicKeys).size).toBe(daemons.length);
    for (const serverName of ['nexus-1', 'stats-1']) {
      const { keyring, unroled } = loadKeyring(dirs.get(serverName)!);
      expect(unroled).toEqual([]);
      expect(daemons.map((d, i) => keyring.get(publicKeys[i]!))).toEqual(daemons.map((d) => ({ role: d.role, name: d.name })));
    }
    expect(statSync(keysDir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dirs.get('runner-1')!, 'node.key')).mode & 0o777).toBe(0o600);
    // A second run keeps every key, and a machine added by hand to the cluster's allow-list reaches both servers.
    const runnerKey = readFileSync(join(dirs.get('runner-1')!, 'node.key'), 'utf8');
    const far = curveKeyPair().publicKey;
    writeFileSync(join(keysDir, 'allowed', 'runner', 'runner-far.pub'), `${far}\n`);
    const again = ensureClusterKeys(keysDir, daemons);
    expect(readFileSync(join(again.get('runner-1')!, 'node.key'), 'utf8')).toBe(runnerKey);
    for (const serverName of ['nexus-1', 'stats-1']) expect(loadKeyring(again.get(serverName)!).keyring.get(far)).toEqual({ role: 'runner', name: 'runner-far' });
  });
});
