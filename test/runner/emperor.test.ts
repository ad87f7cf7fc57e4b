/** A real uWSGI emperor running the example apps as vassals. */
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { TimeoutError } from '../../src/core/errors.js';
import { silentLogger } from '../../src/core/logger.js';
import type { WriteVassalOptions } from '../../src/runner/emperor.js';
import { summarizeFailure } from '../../src/runner/log-tail.js';
import { waitForHttp } from '../../src/runner/probe.js';
import { renderVassal, type VassalSpec } from '../../src/runner/vassal.js';
import { buildVirtualenv } from '../../src/runner/venv.js';
import { freePort } from '../helpers/ports.js';
import { emperorForFile, writeExampleApp, writeHelloApp } from '../helpers/uwsgi.js';
import { waitFor } from '../helpers/wait.js';

const h = emperorForFile();
let helloDir: string;
let venvDir: string;

beforeAll(async () => {
  helloDir = writeHelloApp(h.dir);
  venvDir = join(h.dir, 'venvs', 'hello');
  await buildVirtualenv({ appDir: helloDir, venvDir, log: silentLogger() });
});

/** Renders and writes a vassal for `appDir` on a free port; returns the port. */
async function startVassal(name: string, appDir: string, extra: Partial<VassalSpec> = {}, options: WriteVassalOptions = {}): Promise<number> {
  const port = extra.port ?? (await freePort());
  const spec: VassalSpec = {
    name, appDir, venvDir, port, wsgi: { module: 'wsgi', callable: 'application' }, processes: 1, threads: 2, env: {},
    logFile: h.emperor.vassalLogPath(name), ...extra,
  };
  await h.emperor.writeVassal(name, renderVassal(spec), options);
  return port;
}

interface Reply {
  status: number;
  body: string;
  isReusedSocket: boolean;
}

function get(port: number, path: string, agent: Agent | false = false): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, isReusedSocket: req.reusedSocket }));
    });
    req.once('error', reject);
    req.end();
  });
}

function isRefused(port: number): Promise<boolean> {
  return get(port, '/').then(
    () => false,
    (err: NodeJS.ErrnoException) => err.code === 'ECONNREFUSED',
  );
}

describe('Emperor with the hello app', () => {
  let port: number;

  it('serves it over HTTP/1.1 keep-alive, with its config vars, and logs its output', async () => {
    port = await startVassal('hello-a', helloDir, { env: { GREETING: 'hi there' } });
    await waitForHttp('127.0.0.1', port, { timeoutMs: 8000 });
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const first = await get(port, '/first', agent);
      const second = await get(port, '/second', agent);
      expect(first).toEqual({ status: 200, body: 'Hello from Pier! hi there\n', isReusedSocket: false });
      expect(second).toEqual({ status: 200, body: 'Hello from Pier! hi there\n', isReusedSocket: true });
    } finally {
      agent.destroy();
    }
    await waitFor(async () => (await h.emperor.readVassalLog('hello-a')).some((l) => l === 'hello: GET /second'), {
      name: 'request line in the vassal log',
    });
    expect(await h.emperor.listVassals()).toContain('hello-a');
  });

  it('applies a rewritten vassal, even within the same second as the last write', async () => {
    await startVassal('hello-a', helloDir, { port, env: { GREETING: 'one' } });
    await startVassal('hello-a', helloDir, { port, env: { GREETING: 'two' } });
    await waitFor(async () => (await get(port, '/').catch(() => undefined))?.body === 'Hello from Pier! two\n', {
      name: 'new greeting',
      timeoutMs: 8000,
    });
  });

  it('reloads gracefully on touch', async () => {
    const reloads = (): number =>
      readFileSync(h.emperor.emperorLogPath, 'utf8').split('\n').filter((l) => l.includes('reload the uwsgi instance hello-a.ini')).length;
    const before = reloads();
    await h.emperor.touchVassal('hello-a');
    await waitFor(() => reloads() > before, { name: 'graceful reload', timeoutMs: 5000 });
    await waitForHttp('127.0.0.1', port, { timeoutMs: 5000 });
  });

  it('stops the vassal and frees its port on removeVassal', async () => {
    expect(await h.emperor.removeVassal('hello-a')).toBe(true);
    await waitFor(() => isRefused(port), { name: 'port freed', timeoutMs: 8000 });
    await waitFor(async () => !(await h.emperor.status()).vassals.some((v) => v.name === 'hello-a'), { name: 'vassal gone' });
    expect(await h.emperor.removeVassal('hello-a')).toBe(false);
  });

  it('hands config vars over exactly, even ones uWSGI would otherwise expand', async () => {
    const appDir = join(h.dir, 'apps', 'envdump');
    mkdirSync(appDir, { recursive: true });
    writeFileSync(
      join(appDir, 'wsgi.py'),
      'import json, os\n' +
        'def application(environ, start_response):\n' +
        '    if environ["PATH_INFO"] == "/prechunked":\n' +
        '        start_response("200 OK", [("Transfer-Encoding", "chunked")])\n' +
        '        return [b"3\\r\\nabc\\r\\n", b"0\\r\\n\\r\\n"]\n' +
        '    body = json.dumps({k: v for k, v in os.environ.items() if k.startswith("T_") or k == "PORT"}).encode()\n' +
        '    start_response("200 OK", [("Content-Type", "application/json")])\n' +
        '    return [body]\n',
    );
    const env = { T_PCT: '100%', T_MAGIC: 'a%tb', T_ENV: '$(HOME)', T_FILE: '@(/etc/hostname)', T_EQ: 'a=b', T_SPACE: '  lead', T_TAB: 'x\ty', T_UTF8: 'héllo ☃' };
    const envPort = await startVassal('envdump', appDir, { env });
    await waitForHttp('127.0.0.1', envPort, { timeoutMs: 8000 });
    expect(JSON.parse((await get(envPort, '/')).body)).toEqual({ ...env, PORT: String(envPort) });
  });

  it('keeps the connection alive for responses without Content-Length (chunked by uWSGI unless the app did)', async () => {
    const envPort = Number(/http11-socket = 127\.0\.0\.1:(\d+)/.exec((await h.emperor.readVassal('envdump'))!)![1]);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const started = Date.now();
      const replies = [await get(envPort, '/', agent), await get(envPort, '/prechunked', agent), await get(envPort, '/', agent)];
      expect(replies.map((r) => [r.status, r.isReusedSocket])).toEqual([[200, false], [200, true], [200, true]]);
      expect(replies[1]!.body).toBe('abc'); // chunked by the app: not chunked twice
      expect(Date.now() - started).toBeLessThan(1000); // not the 4 s uWSGI socket timeout
    } finally {
      agent.destroy();
    }
    await h.emperor.removeVassal('envdump');
  });

  it('never answers for an app that fails at import, and its error is in its log', async () => {
    const brokenPort = await startVassal('broken', writeExampleApp(h.dir, 'broken'));
    await expect(waitForHttp('127.0.0.1', brokenPort, { timeoutMs: 2500 })).rejects.toBeInstanceOf(TimeoutError);
    const summary = await waitFor(async () => summarizeFailure(await h.emperor.readVassalLog('broken')), { name: 'failure summary' });
    expect(summary).toMatch(/^Traceback \(most recent call last\):\n/);
    expect(summary.split('\n').at(-1)).toBe('RuntimeError: examples/broken fails on purpose at import time');
    await h.emperor.removeVassal('broken');
  });

  it.runIf(process.getuid?.() === 0)('drops to the given user and still writes its log', async () => {
    chmodSync(h.dir, 0o755); // mkdtemp makes it 0700, which the app's user could not enter
    const uidPort = await startVassal('hello-nobody', helloDir, { uid: 65534, gid: 65534 }, { logOwner: { uid: 65534, gid: 65534 } });
    await waitForHttp('127.0.0.1', uidPort, { timeoutMs: 8000 });
    await get(uidPort, '/as-nobody');
    await waitFor(async () => (await h.emperor.readVassalLog('hello-nobody')).includes('hello: GET /as-nobody'), { name: 'log line' });
    const master = (await h.emperor.status()).vassals.find((v) => v.name === 'hello-nobody')!;
    expect(readFileSync(`/proc/${master.pid}/status`, 'utf8')).toMatch(/^Uid:\s+65534\s/m);
    await h.emperor.removeVassal('hello-nobody', { removeLog: true });
  });

  it("keeps what a vassal says before its logger runs in the emperor's log, which is root's only", async () => {
    await h.emperor.writeVassal('early-death', '[uwsgi]\nstrict = true\nplugins = python3\nrb-no-such-option = 1\n');
    await waitFor(() => readFileSync(h.emperor.emperorLogPath, 'utf8').includes('[strict-mode] unknown config directive: rb-no-such-option'), {
      name: 'early error in the emperor log',
      timeoutMs: 5000,
    });
    expect(statSync(h.emperor.emperorLogPath).mode & 0o777).toBe(0o600);
    expect(statSync(join(h.emperor.emperorLogPath, '..')).mode & 0o777).toBe(0o700);
    expect(statSync(h.emperor.logDir).mode & 0o777).toBe(0o711);
    await h.emperor.removeVassal('early-death');
  });
});
