/**
 * `pier run` on the platform `pier up` starts (CURVE on every socket, two nexus replicas with a sessions ROUTER
 * each, a runner as root): the one-off runs as the app's user. The sessions socket admits only runner keys (ZAP
 * domain 'pier.sessions'), and a runner's hello counts only when signed by that runner's key. App names start
 * with `rn`.
 */
import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as zmq from 'zeromq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeToNexus, decodeToRunner, encode } from '../../src/protocol/index.js';
import { loadCurve, SocketFactory } from '../../src/transport/index.js';
import { appUserName } from '../../src/runner/app-users.js';
import { runCli } from '../helpers/cli.js';
import { searchableTempDir } from '../helpers/data-dir.js';
import { freePort } from '../helpers/ports.js';

const isRoot = process.getuid?.() === 0;
const APP = `rn-up-${process.pid % 10000}`;
let dataDir: string;
let env: NodeJS.ProcessEnv;
let sessions: string[] = [];

beforeAll(async () => {
  if (!isRoot) return;
  dataDir = searchableTempDir('pier-rn-up-');
  const ports = await Promise.all(Array.from({ length: 14 }, () => freePort()));
  const [pg, c1, e1, h1, a1, s1, c2, e2, h2, a2, s2, web, si, st] = ports as [number, ...number[]];
  const sq = await freePort();
  sessions = [`tcp://127.0.0.1:${s1}`, `tcp://127.0.0.1:${s2}`];
  const instancePorts = 30000 + (process.pid % 100) * 50 + 25;
  const nexus = (c: number, e: number, h: number, a: number, s: number): string =>
    `[[cluster.nexus]]\ncontrol = "tcp://127.0.0.1:${c}"\nevents = "tcp://127.0.0.1:${e}"\nheartbeats = "tcp://127.0.0.1:${h}"\napi = "http://127.0.0.1:${a}"\nsessions = "tcp://127.0.0.1:${s}"\n`;
  writeFileSync(join(dataDir, 'pier.toml'),
    `[log]\nlevel = "info"\n[db]\nembeddedPort = ${pg}\n[balancer]\nport = ${web}\n[runner]\nportMin = ${instancePorts}\nportMax = ${instancePorts + 20}\n` +
    `[[cluster.stats]]\nintake = "tcp://127.0.0.1:${si}"\ntail = "tcp://127.0.0.1:${st}"\nquery = "tcp://127.0.0.1:${sq}"\n` +
    nexus(c1!, e1!, h1!, a1!, s1!) + nexus(c2!, e2!, h2!, a2!, s2!));
  env = { PIER_DATA: dataDir, XDG_CONFIG_HOME: join(dataDir, 'xdg') };
  const up = await runCli(['up', '--detach'], env);
  expect(up.stderr).toBe('');
  expect(up.code, up.stdout).toBe(0);
}, 120_000);

afterAll(async () => {
  if (!isRoot) return;
  await runCli(['down'], env);
  try {
    execFileSync('userdel', [appUserName(APP)], { stdio: 'ignore' });
  } catch {
    // never created
  }
  rmSync(dataDir, { recursive: true, force: true });
}, 60_000);

/** A DEALER to a nexus's sessions socket with the key of `who` (a folder of pier up's keys). */
function dealerAs(who: string, endpoint: string): { socket: zmq.Dealer; sockets: SocketFactory } {
  const sockets = new SocketFactory({ maxMessageBytes: 1024 * 1024, curve: loadCurve(join(dataDir, 'keys', who), 'client') });
  const socket = sockets.dealer(1000);
  socket.receiveTimeout = 1500;
  socket.connect(endpoint);
  return { socket, sockets };
}

async function welcomed(who: string, nodeId: string): Promise<boolean> {
  const { socket, sockets } = dealerAs(who, sessions[0]!);
  try {
    const payload = encode({ v: 1, type: 'session.hello', nodeId, running: [] });
    const proof = sockets.proof(payload)!;
    await socket.send([proof, payload]);
    const [reply] = await socket.receive();
    return decodeToRunner(reply!).type === 'session.welcome';
  } catch {
    return false; // EAGAIN: no answer (refused by ZAP or ignored)
  } finally {
    socket.close();
  }
}

describe.runIf(isRoot)('pier run on pier up', () => {
  it("runs a one-off as the app's user through the CURVE sessions socket", async () => {
    const created = await runCli(['apps:create', APP], env);
    expect(created.stderr).toBe('');
    const appDir = join(dataDir, 'src');
    mkdirSync(appDir, { recursive: true });
    writeFileSync(join(appDir, 'wsgi.py'), 'def application(e, s):\n    s("200 OK", [])\n    return [b"ok"]\n');
    expect((await runCli(['config:set', 'GREETING=from pier up', '-a', APP], env)).code).toBe(0);
    const deployed = await runCli(['deploy', appDir, '-a', APP], env);
    expect(deployed.stderr).toBe('');
    const ran = await runCli(['run', '-a', APP, '--', 'python', '-c', 'import os, sys; print(os.getuid(), os.environ["GREETING"]); sys.exit(3)'], env);
    const uid = execFileSync('id', ['-u', appUserName(APP)]).toString().trim();
    expect(ran).toMatchObject({ code: 3, stdout: `${uid} from pier up\n`, stderr: '' });
  }, 90_000);

  it('admits only runner keys to the sessions socket, and a hello only as the runner whose key signed it', async () => {
    expect(await welcomed('runner-1', 'runner-1')).toBe(true); // the real runner's key, as itself
    expect(await welcomed('runner-1', 'runner-2')).toBe(false); // its key, claiming another runner
    expect(await welcomed('balancer-1', 'runner-1')).toBe(false); // ZAP: a balancer key may not connect
    expect(await welcomed('operator', 'runner-1')).toBe(false);
    // A session message from a connection that never said hello is dropped; the nexus does not crash.
    const { socket } = dealerAs('runner-1', sessions[1]!);
    await socket.send([encode({ v: 1, type: 'session.exit', session: 'nosuchsession', code: 0, signal: null })]);
    socket.close();
    expect(decodeToNexus(encode({ v: 1, type: 'session.hello', nodeId: 'runner-1', running: [] })).type).toBe('session.hello');
    expect((await runCli(['run', '-a', APP, '--', 'echo', 'still', 'fine'], env)).stdout).toBe('still fine\n');
  }, 60_000);
});
