/** Redis add-on tests: raw RESP over TCP and the redis-server processes of an app user. */
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { expect } from 'vitest';
import { getAddon, type Addon } from '../../src/db/index.js';
import { processesOf } from '../../src/runner/app-files.js';
import type { Platform } from './platform.js';
import { testPool } from './postgres.js';

/** Sends raw RESP lines and returns what the server answered within `ms`. */
export function resp(port: number, lines: string[], ms = 500): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const socket = connect({ host: '127.0.0.1', port }, () => socket.write(lines.map((l) => `${l}\r\n`).join('')));
    socket.on('data', (c) => (got += c.toString()));
    socket.once('error', reject);
    setTimeout(() => {
      socket.destroy();
      resolve(got);
    }, ms);
  });
}

/** Live redis-server processes of the uid. */
export async function redisServersOf(uid: number): Promise<number[]> {
  const pids: number[] = [];
  for (const pid of await processesOf(uid)) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('/usr/bin/redis-server')) pids.push(pid);
    } catch {
      // gone
    }
  }
  return pids;
}

/** A Redis add-on created for `app` through the API, and a reader of its row (the pool is closed after the file). */
export async function createRedisAddon(p: Platform, app: string): Promise<{ name: string; read: () => Promise<Addon> }> {
  const pool = testPool(p.dbUrl);
  const ref = { id: Number((await pool.query<{ id: string }>('SELECT id FROM apps WHERE name = $1', [app])).rows[0]!.id), name: app };
  const create = await p.api<{ addon: { name: string } }>('POST', `/v1/apps/${app}/addons`, { kind: 'redis' });
  expect(create.status).toBe(201);
  const { name } = create.json.addon;
  return { name, read: () => getAddon(pool, ref, name) };
}
