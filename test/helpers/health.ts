/** Helpers of the health e2e tests: the test app (its /health fails while a flag file is in its TMPDIR), readers of health and events, a local webhook. */
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { request } from 'undici';
import type { HealthReply, StateEvent } from '../../src/protocol/index.js';
import { appUserName } from '../../src/runner/app-users.js';
import type { Platform } from './platform.js';

/** /health fails (500) while the flag file is in the instance's TMPDIR; '/' always answers its version; /die kills the instance's uWSGI master. */
export function healthApp(version: string, healthBody = 'ok', healthStatus = '200 OK'): Record<string, string> {
  return {
    'wsgi.py': `import os, signal
def application(environ, start_response):
    if environ.get('PATH_INFO') == '/die':
        os.kill(os.getppid(), signal.SIGKILL)
    if environ.get('PATH_INFO') == '/health':
        if os.path.exists(os.path.join(os.environ.get('TMPDIR', '/nonexistent'), 'unhealthy')):
            start_response('500 Internal Server Error', [('Content-Type', 'text/plain')])
            return [b'flag set: failing on purpose']
        start_response('${healthStatus}', [('Content-Type', 'text/plain')])
        return [b'${healthBody}']
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'${version}']
`,
  };
}

export async function healthOf(p: Platform, app: string): Promise<HealthReply> {
  return (await p.api<HealthReply>('GET', `/v1/apps/${app}/health`)).json;
}

/** Reads every event so far through the operators' API, page by page, kept between calls. */
export function eventReader(p: Platform): (app: string) => Promise<StateEvent[]> {
  const seen: StateEvent[] = [];
  return async (app) => {
    for (;;) {
      const after = seen.at(-1)?.version ?? 0;
      const page = (await p.admin<{ events: StateEvent[] }>('GET', `/v1/events?after=${after}&limit=1000`)).json.events;
      seen.push(...page);
      if (page.length < 1000) break;
    }
    return seen.filter((e) => e.app === app);
  };
}

/** Writes or removes the flag as the app's own user (the test plays the app; root never writes into its HOME). */
export function setFlag(p: Platform, app: string, instance: string, isSet: boolean): void {
  const path = join(p.dir, 'runner', 'homes', instance, 'unhealthy');
  execFileSync('runuser', ['-u', appUserName(app), '--', isSet ? 'touch' : 'rm', ...(isSet ? [] : ['-f']), path]);
}

/** GET / of the app through the balancer: "status body". */
export async function publicGet(p: Platform, app: string): Promise<string> {
  const res = await request(`http://127.0.0.1:${p.balancer.port}/`, { headers: { host: `${app}.localhost` } });
  return `${res.statusCode} ${await res.body.text()}`;
}

/** Instance ids the balancer routes the app's live traffic to now. */
export function routedIds(p: Platform, app: string): string[] {
  const found = p.balancer.table.lookup(`${app}.localhost`);
  return found.kind === 'app' ? found.route.backends.map((b) => b.id).sort() : [];
}

/** A local webhook answering `statuses` in turn (then 200); records each JSON body it got. */
export async function webhookServer(statuses: number[]): Promise<{ url: string; got: Array<{ type: string; alert: Record<string, unknown> }>; close(): void }> {
  const got: Array<{ type: string; alert: Record<string, unknown> }> = [];
  const server = createServer((req, res) => {
    let text = '';
    req.on('data', (c: Buffer) => (text += c.toString()));
    req.on('end', () => {
      got.push(JSON.parse(text));
      res.statusCode = statuses.shift() ?? 200;
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/alerts`, got, close: () => server.close() };
}

