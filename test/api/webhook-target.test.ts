/**
 * Alert webhooks cannot be aimed at the platform (#11 follow-up, SSRF), through the JSON API and the CLI: an owner
 * setting their app's webhook to loopback, private, link-local or metadata addresses — in any spelling, or by a name
 * resolving there — gets a 400 PIER_VALIDATION naming the rule, and the stored webhook is unchanged. A public
 * address is taken; with nexus.alertWebhookAllowPrivate the operator lets owners use private receivers.
 */
import { hostname } from 'node:os';
import { beforeAll, describe, expect, it } from 'vitest';
import { newToken, randomId } from '../../src/core/ids.js';
import { ensureAdmin, withTransaction } from '../../src/db/index.js';
import { runCli } from '../helpers/cli.js';
import { startNexus, type NexusHandle } from '../helpers/daemons.js';
import { testDatabase, testPool } from '../helpers/postgres.js';

const dbUrl = await testDatabase();
const pool = testPool(dbUrl);
const adminToken = newToken();
await withTransaction(pool, (tx) => ensureAdmin(tx, 'admin', adminToken));

/** Every URL an attacker tries, with the rule its refusal must name. */
const ATTACKS: Array<[string, string]> = [
  ['http://127.0.0.1/hook', 'loopback'],
  ['http://[::1]/hook', 'loopback'],
  ['http://10.0.0.5/hook', 'private'],
  ['http://192.168.1.1/hook', 'private'],
  ['http://169.254.169.254/latest/meta-data/', 'link-local'],
  ['http://localhost:5432/', 'loopback'],
  ['http://2130706433/', 'loopback'],
  ['http://0177.0.0.1/', 'loopback'],
  ['http://0x7f000001/', 'loopback'],
  ['http://[::ffff:127.0.0.1]/', 'loopback'],
  ['http://[::ffff:a9fe:a9fe]/', 'link-local'],
  ['http://[fd00::2]/', 'private'],
  ['http://0.0.0.0:8080/', 'unspecified'],
  ['http://224.0.0.1/', 'multicast'],
  [`http://${hostname()}:5432/`, 'loopback'], // a real name the resolver turns into 127.0.0.1 (/etc/hosts)
];

type Call = (method: string, path: string, body?: unknown) => Promise<{ status: number; body: any }>;

async function ownerOn(n: NexusHandle): Promise<{ call: Call; token: string; app: string }> {
  const raw = async (token: string, method: string, path: string, body?: unknown) => {
    const res = await fetch(`${n.api}${path}`, {
      method, headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as any };
  };
  const owner = await raw(adminToken, 'POST', '/v1/owners', { name: `fb-owner-${randomId(6)}` });
  const token = owner.body.token as string;
  const app = `fb${randomId(6)}`;
  expect((await raw(token, 'POST', '/v1/apps', { name: app })).status).toBe(201);
  return { call: (method, path, body) => raw(token, method, path, body), token, app };
}

let guarded: NexusHandle;
beforeAll(async () => {
  guarded = await startNexus(dbUrl, {}, 'file');
});

describe('alert webhook targets (API and CLI)', () => {
  it('answers 400 naming the rule for every address an app must not reach, and leaves the stored webhook alone', async () => {
    const { call, app } = await ownerOn(guarded);
    const publicUrl = 'https://93.184.216.34/pier-hook?secret=s';
    expect(await call('PUT', `/v1/apps/${app}/alerts/webhook`, { url: publicUrl })).toEqual({ status: 200, body: { app, url: publicUrl } });
    for (const [url, rule] of ATTACKS) {
      const answer = await call('PUT', `/v1/apps/${app}/alerts/webhook`, { url });
      expect(answer.status, url).toBe(400);
      expect(answer.body.error.code, url).toBe('PIER_VALIDATION');
      expect(answer.body.error.message, url).toMatch(new RegExp(`^webhook host \\S+ (is|resolves to) .*\\(rule ${rule}\\); an app's alerts go to public addresses only`));
      expect(answer.body.error.message, url).not.toContain('\n');
    }
    // Credentials and other schemes keep their own messages.
    expect((await call('PUT', `/v1/apps/${app}/alerts/webhook`, { url: 'https://u:p@93.184.216.34/' })).body.error.message).toMatch(/must not carry a user or password/);
    expect((await call('PUT', `/v1/apps/${app}/alerts/webhook`, { url: 'file:///etc/passwd' })).body.error.message).toMatch(/must be an http:\/\/ or https:\/\/ URL/);
    expect((await call('GET', `/v1/apps/${app}/alerts/webhook`)).body).toEqual({ app, url: publicUrl });
  });

  it('the CLI prints the one-line refusal and exits non-zero', async () => {
    const { token, app } = await ownerOn(guarded);
    const env = { PIER_API_URL: guarded.api, PIER_TOKEN: token };
    const refused = await runCli(['alerts:webhook', 'http://169.254.169.254/latest/meta-data/', '-a', app], env);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr.trim()).toBe("error: webhook host 169.254.169.254 is a link-local address (rule link-local); an app's alerts go to public addresses only — give a public http(s) URL (PIER_VALIDATION)");
    const taken = await runCli(['alerts:webhook', 'https://93.184.216.34/hook', '-a', app], env);
    expect(taken.code, taken.stderr).toBe(0);
    expect(taken.stdout).toContain(`${app}: alerts are POSTed to https://93.184.216.34/hook`);
  });

  it('with nexus.alertWebhookAllowPrivate the operator lets owners use a private receiver', async () => {
    const open = await startNexus(dbUrl, { nexus: { alertWebhookAllowPrivate: true } });
    const { call, app } = await ownerOn(open);
    expect(await call('PUT', `/v1/apps/${app}/alerts/webhook`, { url: 'http://10.0.0.5/hook' })).toEqual({ status: 200, body: { app, url: 'http://10.0.0.5/hook' } });
  });
});
