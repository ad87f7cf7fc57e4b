/**
 * Attack: an app binds the port another app's next instance is about to get, and answers HTTP there, hoping the
 * runner's probe and then the balancer send it the victim's traffic. All real: the squatter is a deployed app
 * (running as its own user p-rl-squat) binding the port from its own code.
 *
 * Determinism: the runner gets a real PortPool whose allocate() lets the squatter bind the port it just handed
 * out, before the vassal file is even written — the worst case of the race an app would otherwise have to win
 * (bind between the pool's free check and uWSGI's bind).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PortPool } from '../../src/runner/ports.js';
import { send } from '../balancer/helpers.js';
import { platformForFile } from '../helpers/platform.js';
import { waitFor } from '../helpers/wait.js';

/** A real pool; `beforeReturn` runs once, with the next port handed out. */
class SquattablePool extends PortPool {
  beforeReturn: ((port: number) => Promise<void>) | undefined;

  override async allocate(): Promise<number> {
    const port = await super.allocate();
    const hook = this.beforeReturn;
    this.beforeReturn = undefined;
    if (hook) await hook(port);
    return port;
  }
}

const base = 26000 + (process.pid % 50) * 40;
const pool = new SquattablePool(base, base + 39);
const p = platformForFile({ apps: ['rl-squat', 'rl-victim'], ports: pool, runner: { portMin: base, portMax: base + 39 } });

const SQUATTER = `import socket, threading, urllib.parse
hits = []
def serve(sock):
    while True:
        conn, _ = sock.accept()
        hits.append(1)
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 8\\r\\nConnection: close\\r\\n\\r\\nSQUATTER")
        finally:
            conn.close()
def application(environ, start_response):
    if environ["PATH_INFO"] == "/squat":
        port = int(urllib.parse.parse_qs(environ["QUERY_STRING"])["port"][0])
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(64)
        threading.Thread(target=serve, args=(s,), daemon=True).start()
        body = b"listening"
    elif environ["PATH_INFO"] == "/hits":
        body = str(len(hits)).encode()
    else:
        body = b"squat app"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
`;
const VICTIM = `def application(environ, start_response):\n    start_response("200 OK", [("Content-Type", "text/plain")])\n    return [b"victim"]\n`;

describe('instance ports (tenant boundary)', () => {
  it("never routes a victim's traffic to an app squatting its port: the instance moves to another port", async () => {
    expect((await p.deploy('rl-squat', p.writeApp('rl-squat', { 'wsgi.py': SQUATTER }))).status).toBe('live');
    await waitFor(async () => (await send(p.balancer.port!, 'rl-squat.localhost')).body === 'squat app', { name: 'squatter app routed' });

    let squatted = 0;
    pool.beforeReturn = async (port) => {
      squatted = port;
      const reply = await send(p.balancer.port!, 'rl-squat.localhost', { path: `/squat?port=${port}` });
      expect(reply.body).toBe('listening');
    };
    const started = Date.now();
    const release = await p.deploy('rl-victim', p.writeApp('rl-victim', { 'wsgi.py': VICTIM }));
    const tookMs = Date.now() - started;
    expect(release.status).toBe('live');
    expect(squatted).toBeGreaterThan(0);

    const [instance] = await p.readyInstances('rl-victim');
    expect(instance!.port).not.toBe(squatted);
    const replies = await Promise.all(Array.from({ length: 20 }, () => send(p.balancer.port!, 'rl-victim.localhost')));
    expect(replies.map((r) => r.body)).toEqual(Array(20).fill('victim'));
    // Neither the runner's probes and warm-up nor the balancer ever reached the squatter...
    expect((await send(p.balancer.port!, 'rl-squat.localhost', { path: '/hits' })).body).toBe('0');
    // ...which really was listening there, as another user, all along.
    expect((await fetch(`http://127.0.0.1:${squatted}/`).then((r) => r.text()))).toBe('SQUATTER');
    expect((await send(p.balancer.port!, 'rl-squat.localhost', { path: '/hits' })).body).toBe('1');

    console.log(`squatted port ${squatted}; victim ready on ${instance!.port}; deploy took ${tookMs} ms`);
  }, 60_000);

  it("keeps the vassals folder, the list of apps and the emperor's record from apps' eyes", async () => {
    expect(statSync(join(p.runner.dir, 'emperor', 'vassals')).mode & 0o777).toBe(0o700);
    expect(statSync(join(p.runner.dir, 'emperor', 'emperor.json')).mode & 0o777).toBe(0o600);
    expect(statSync(join(p.runner.dir, 'releases')).mode & 0o777).toBe(0o711);
    // As an app's user: its own release folder is reachable, the list of every app's is not.
    const victim = (await p.readyInstances('rl-victim'))[0];
    expect(victim).toBeDefined();
    const { uid, gid } = statSync(join(p.runner.dir, 'releases', 'rl-victim'));
    const as = (args: string[]) => spawnSync(args[0]!, args.slice(1), { uid: Number(execFileSync('id', ['-u', 'p-rl-victim']).toString()), gid, encoding: 'utf8' });
    expect(uid).toBe(0);
    expect(as(['ls', join(p.runner.dir, 'releases')]).status).not.toBe(0);
    expect(as(['ls', join(p.runner.dir, 'releases', 'rl-victim')]).status).toBe(0);
  });
});
