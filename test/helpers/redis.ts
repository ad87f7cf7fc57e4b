/** Redis add-on tests: raw RESP over TCP and the redis-server processes of an app user. */
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { processesOf } from '../../src/runner/app-files.js';

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
