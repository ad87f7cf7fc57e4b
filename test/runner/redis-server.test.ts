/**
 * One Redis add-on server under the runner's supervision (src/runner/redis-server.ts), with real Debian
 * redis-server as a real app user: a squatter on its port never receives the password (the start fails before any
 * AUTH is sent); an app cannot point the server at other paths or load code; it evicts at maxmemory; a crashed
 * server is restarted, empty, and says why. Users are named `p-rd…`.
 */
import { execFileSync } from 'node:child_process';
import { chownSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, connect, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import { silentLogger } from '../../src/core/logger.js';
import { AppUsers, type AppUser } from '../../src/runner/app-users.js';
import { RedisServer, redisConfig, type RedisServerSpec } from '../../src/runner/redis-server.js';
import { searchableTempDir } from '../helpers/data-dir.js';
import { waitFor } from '../helpers/wait.js';
import { resp } from '../helpers/redis.js';

const isRoot = process.getuid?.() === 0;
const users = new AppUsers();
const app = `rd${randomId(2)}-unit`;
const dir = searchableTempDir('pier-rd-');
let user: AppUser | undefined;
const PORT_BASE = 31900 + (process.pid % 25) * 4;

afterAll(async () => {
  if (user) {
    try {
      execFileSync('pkill', ['-KILL', '-u', String(user.uid)], { stdio: 'ignore' });
    } catch {
      // none left
    }
    await users.remove(app).catch(() => undefined);
  }
  rmSync(dir, { recursive: true, force: true });
});

function spec(port: number, overrides: Partial<RedisServerSpec> = {}): RedisServerSpec {
  const workDir = join(dir, `w-${randomId(3)}`);
  mkdirSync(workDir, { mode: 0o700 });
  if (user) chownSync(workDir, user.uid, user.gid);
  return { name: `redis-${randomId(2)}`, port, bindHost: '127.0.0.1', password: randomId(16), maxmemoryMb: 8, workDir, ...(user ? { user } : {}), ...overrides };
}

describe('redisConfig', () => {
  it('refuses a password or a folder that would need quoting in redis.conf', () => {
    expect(() => redisConfig({ port: 1, bindHost: '127.0.0.1', password: 'short', maxmemoryMb: 8, workDir: '/x' })).toThrow('a redis password must be 16-128 letters and digits');
    expect(() => redisConfig({ port: 1, bindHost: '127.0.0.1', password: 'a'.repeat(20) + '\nslaveof x', maxmemoryMb: 8, workDir: '/x' })).toThrow(/password/);
    expect(() => redisConfig({ port: 1, bindHost: '127.0.0.1', password: 'a'.repeat(20), maxmemoryMb: 8, workDir: '/x"\ndir /' })).toThrow(/working folder/);
    const text = redisConfig({ port: 30001, bindHost: '127.0.0.1', password: 'a'.repeat(20), maxmemoryMb: 8, workDir: '/srv/x' });
    expect(text).toContain('requirepass aaaaaaaaaaaaaaaaaaaa\n');
    expect(text).toContain('save ""\n');
    expect(text).toContain('maxmemory-policy allkeys-lru\n');
  });
});

describe.runIf(isRoot)('RedisServer', () => {
  it('never sends the password to a squatter on its port: the start fails before any AUTH', async () => {
    user = await users.ensure(app);
    const port = PORT_BASE;
    let received = '';
    const squatter: Server = createServer((socket) => socket.on('data', (c) => (received += c.toString())));
    await new Promise<void>((resolve) => squatter.listen(port, '0.0.0.0', resolve));
    onTestFinished(() => new Promise<void>((resolve) => squatter.close(() => resolve())));
    const failures: string[] = [];
    const server = new RedisServer(spec(port), { onUp: () => undefined, onFailed: (reason) => failures.push(reason), log: silentLogger() });
    await expect(server.start()).rejects.toThrow(`port ${port} is taken on this runner`);
    expect(failures).toEqual([`port ${port} is taken on this runner`]);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(received).toBe('');
    await server.stop();
  });

  it('keeps an app from moving its files, loading code or debugging it; evicts at maxmemory; restarts a crash empty', async () => {
    user ??= await users.ensure(app);
    const port = PORT_BASE + 1;
    const ups: Array<{ restarted: boolean; why?: string }> = [];
    const s = spec(port);
    const server = new RedisServer(s, { onUp: (restarted, why) => ups.push({ restarted, ...(why ? { why } : {}) }), onFailed: () => undefined, log: silentLogger() });
    onTestFinished(() => server.stop());
    await server.start();
    expect(ups).toEqual([{ restarted: false }]);
    const auth = `AUTH ${s.password}`;
    expect(await resp(port, [auth, 'CONFIG SET dir /etc'])).toMatch(/^\+OK\r\n-ERR .*protected config/s);
    expect(await resp(port, [auth, 'CONFIG SET dbfilename passwd'])).toMatch(/^\+OK\r\n-ERR .*protected config/s);
    expect(await resp(port, [auth, 'MODULE LOAD /tmp/x.so'])).toMatch(/^\+OK\r\n-ERR .*MODULE command not allowed/s);
    expect(await resp(port, [auth, 'DEBUG SLEEP 0'])).toMatch(/^\+OK\r\n-ERR .*DEBUG command not allowed/s);

    // 24 MiB written into an 8 MiB cache: keys are evicted, memory stays near the limit.
    const value = 'x'.repeat(64 * 1024);
    const socket = connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    let answers = '';
    socket.on('data', (c) => (answers += c.toString()));
    socket.write(`${auth}\r\n`);
    for (let i = 0; i < 384; i++) socket.write(`SET k${i} ${value}\r\n`);
    await waitFor(() => (answers.match(/\+OK\r\n/g)?.length ?? 0) >= 385 || undefined, { name: 'writes answered', timeoutMs: 10_000 });
    socket.destroy();
    const info = await resp(port, [auth, 'INFO']);
    const used = Number(/used_memory:(\d+)/.exec(info)![1]);
    expect(Number(/evicted_keys:(\d+)/.exec(info)![1])).toBeGreaterThan(100);
    expect(used).toBeLessThan(10 * 1024 * 1024);

    // A crash: started again, empty, and the reason given.
    const pid = server.pid!;
    process.kill(pid, 'SIGKILL');
    await waitFor(() => ups.length === 2 || undefined, { name: 'restarted', timeoutMs: 5000 });
    expect(ups[1]).toEqual({ restarted: true, why: 'redis-server exited (SIGKILL); restarted empty' });
    expect(server.pid).not.toBe(pid);
    expect(await resp(port, [auth, 'DBSIZE'])).toBe('+OK\r\n:0\r\n');
    expect(Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${server.pid}/status`, 'utf8'))![1])).toBe(user.uid);
  }, 30_000);
});
