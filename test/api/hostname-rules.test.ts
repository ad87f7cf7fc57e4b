/**
 * Attack 9 of #10, "anyone claims any hostname": an owner tries to attach names that would take other people's or
 * the platform's traffic (`*.com`, `*.co.uk`, `*.github.io`, `*.localhost`, another app's `<app>.localhost`,
 * `localhost`, IP literals in every spelling, `.local`/`.internal` names). Each is a 400 PIER_VALIDATION naming its
 * rule, through the JSON API and the control protocol alike; ordinary names still work.
 */
import { describe, expect, it } from 'vitest';
import { newToken, randomId } from '../../src/core/ids.js';
import { ensureAdmin, withTransaction } from '../../src/db/index.js';
import { HOSTNAME_RULES, hostnameRefusal, type HostnameRule } from '../../src/protocol/index.js';
import { controlClient, startNexus } from '../helpers/daemons.js';
import { testDatabase, testPool } from '../helpers/postgres.js';

const dbUrl = await testDatabase();
const pool = testPool(dbUrl);
const adminToken = newToken();
await withTransaction(pool, (tx) => ensureAdmin(tx, 'admin', adminToken));

/** Every attack, by the rule that must refuse it (the nexus runs with the default app domain, localhost). */
const ATTACKS: Record<HostnameRule, string[]> = {
  'ip-literal': ['127.0.0.1', '10.0.0.1', '127.1', '0x7f.1', '0x7f000001', '2130706433', '0177.0.0.1', '*.1.2.3', 'example.123', 'foo.0x10'],
  'platform-domain': ['localhost', '*.localhost', 'victim.localhost', 'stage.victim.localhost', 'a.b.localhost'],
  'special-name': ['printer.local', 'metadata.google.internal', 'router.lan', 'db.localdomain', 'nas.home.arpa', 'x.corp'],
  'single-label': ['metadata', 'intranetserver'],
  'wildcard-depth': ['*.com', '*.io', '*.uk'],
  'public-suffix': ['*.co.uk', '*.github.io', '*.herokuapp.com', '*.com.au', 'co.uk', '*.s3.amazonaws.com'],
};

describe('hostname rules (pure)', () => {
  it('refuses each attack by the rule that names it', () => {
    for (const [rule, names] of Object.entries(ATTACKS)) {
      for (const name of names) {
        const refusal = hostnameRefusal(name, { app: 'mine', domains: ['localhost'] });
        expect(refusal?.rule, name).toBe(rule);
        expect(refusal?.message, name).toContain(`(rule ${rule})`);
        expect(refusal?.message, name).not.toContain('\n');
      }
    }
    expect(Object.keys(ATTACKS).sort()).toEqual([...HOSTNAME_RULES].sort());
  });

  it("refuses the app's own platform names as redundant, and any name a wildcard would share with the platform", () => {
    const ctx = { app: 'shop', domains: ['apps.example.net'] };
    expect(hostnameRefusal('shop.apps.example.net', ctx)?.message).toContain("app 'shop' already answers at shop.apps.example.net and stage.shop.apps.example.net");
    expect(hostnameRefusal('stage.shop.apps.example.net', ctx)?.rule).toBe('platform-domain');
    expect(hostnameRefusal('other.apps.example.net', ctx)?.rule).toBe('platform-domain');
    expect(hostnameRefusal('*.apps.example.net', ctx)?.rule).toBe('platform-domain');
    expect(hostnameRefusal('*.example.net', ctx)?.rule).toBe('platform-domain'); // would also match <app>.apps.example.net
    expect(hostnameRefusal('localhost', ctx)?.rule).toBe('special-name'); // not the platform domain here, still local
    expect(hostnameRefusal('example.net', ctx)).toBeUndefined();
    expect(hostnameRefusal('www.example.net', ctx)).toBeUndefined();
  });

  it('refuses IPv6 literals too (the API schema already refuses their colons and brackets)', () => {
    for (const name of ['::1', '[::1]', 'fe80::1', '[2001:db8::1]', '::ffff:127.0.0.1']) {
      expect(hostnameRefusal(name, { app: 'mine', domains: ['localhost'] })?.rule, name).toBe('ip-literal');
    }
  });

  it('accepts ordinary names and wildcards', () => {
    for (const name of ['www.example.com', '*.example.com', 'example.com', 'shop.example.co.uk', '*.example.co.uk', 'me.github.io', 'a1.example.com', 'app.example.test', '1password.com', '127-0-0-1.example.com']) {
      expect(hostnameRefusal(name, { app: 'mine', domains: ['localhost'] }), name).toBeUndefined();
    }
  });
});

describe('hostname rules (API and control protocol)', () => {
  it('answers 400 naming the rule for every attack through the API, and still takes www.example.com and *.example.com', async () => {
    const n = await startNexus(dbUrl);
    const call = async (method: string, path: string, token: string, body?: unknown) => {
      const res = await fetch(`${n.api}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: res.status, body: (await res.json()) as any };
    };
    const owner = await call('POST', '/v1/owners', adminToken, { name: `ap-h-${randomId(6)}` });
    const token = owner.body.token as string;
    const app = `ap-${randomId(6)}`;
    expect((await call('POST', '/v1/apps', token, { name: app })).status).toBe(201);
    // Another app's platform name, by its real name.
    const victim = `ap-v-${randomId(6)}`;
    expect((await call('POST', '/v1/apps', adminToken, { name: victim })).status).toBe(201);
    const attacks: Array<[HostnameRule, string]> = [
      ...Object.entries(ATTACKS).flatMap(([rule, names]) => names.map((h) => [rule as HostnameRule, h.replace('victim', victim)] as [HostnameRule, string])),
      ['platform-domain', `${app}.localhost`],
    ];
    for (const [rule, hostname] of attacks) {
      const res = await call('POST', `/v1/apps/${app}/hostnames`, token, { hostname });
      expect(res.status, hostname).toBe(400);
      expect(res.body.error.code, hostname).toBe('PIER_VALIDATION');
      expect(res.body.error.message, hostname).toContain(`hostname '${hostname}' is refused (rule ${rule})`);
    }
    expect(((await call('POST', `/v1/apps/${app}/hostnames`, token, { hostname: `${app}.localhost` })).body.error.message)).toBe(
      `hostname '${app}.localhost' is refused (rule platform-domain): app '${app}' already answers at ${app}.localhost and stage.${app}.localhost; there is nothing to add`,
    );
    const www = `www.${app}.example.com`;
    expect((await call('POST', `/v1/apps/${app}/hostnames`, token, { hostname: www })).status).toBe(201);
    expect((await call('POST', `/v1/apps/${app}/hostnames`, token, { hostname: `*.${app}.example.com` })).status).toBe(201);
    expect((await call('GET', `/v1/apps/${app}/hostnames`, token)).body.hostnames).toEqual([`*.${app}.example.com`, www]);
    for (const hostname of ['::1', '[::1]', '[2001:db8::1]']) {
      const res = await call('POST', `/v1/apps/${app}/hostnames`, token, { hostname });
      expect(res.status, hostname).toBe(400);
      expect(res.body.error.message, hostname).toBe("body.hostname must be a lowercase hostname such as 'www.example.com' or '*.example.com'");
    }
    // The refused names changed nothing.
    const { rows } = await pool.query<{ hostname: string }>('SELECT hostname FROM hostnames WHERE hostname = ANY($1)', [attacks.map(([, h]) => h)]);
    expect(rows).toEqual([]);

    // The control protocol's host.add applies the same rules (one module, src/protocol/hostname-rules.ts).
    const client = controlClient([n.control], 2000);
    for (const [rule, hostname] of [['wildcard-depth', '*.com'], ['ip-literal', '127.1'], ['platform-domain', `${victim}.localhost`], ['special-name', 'x.internal']] as const) {
      await expect(client.call('host.add', { token, app, hostname }), hostname).rejects.toMatchObject({ code: 'PIER_VALIDATION', message: expect.stringContaining(`(rule ${rule})`) });
    }
    expect((await client.call('host.add', { token, app, hostname: `api.${app}.example.com` })).hostnames).toContain(`api.${app}.example.com`);
  });
});
