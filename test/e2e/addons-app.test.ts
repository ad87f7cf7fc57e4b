/**
 * A deployed app and its postgresql add-on end to end (root platform, real runner, uWSGI, balancer): creating the
 * add-on rolls a new release whose instances get DATABASE_URL and reach their database as the app's user (Debian
 * psycopg2 in the release's virtualenv); the data outlives a redeploy and a rollback to a release from before the
 * add-on (which keeps DATABASE_URL); destroying the add-on rolls a release without it.
 */
import { request } from 'undici';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import type { AddonView, Release } from '../../src/protocol/index.js';
import { platformForFile } from '../helpers/platform.js';
import { dropAddonLeftovers } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';

const apps: string[] = [];
const p = platformForFile({ prefix: 'ad', apps });
const app = `ad-e2e-${randomId(3)}`;
apps.push(app);

const WSGI = `import os
def application(environ, start_response):
    url = os.environ.get("DATABASE_URL")
    if not url:
        body = "no database"
    else:
        import psycopg2
        conn = psycopg2.connect(url)
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS visits (n serial PRIMARY KEY)")
            cur.execute("INSERT INTO visits DEFAULT VALUES")
            cur.execute("SELECT count(*), current_user FROM visits")
            count, user = cur.fetchone()
        conn.close()
        body = "visits=%d user=%s" % (count, user)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
`;

async function get(): Promise<string> {
  const res = await request(`http://127.0.0.1:${p.balancer.port}/`, { headers: { host: `${app}.localhost` } });
  return res.body.text();
}

async function latestRelease(): Promise<Release> {
  const { releases } = (await p.api<{ releases: Release[] }>('GET', `/v1/apps/${app}/releases`)).json;
  return releases.reduce((a, b) => (a.version > b.version ? a : b));
}

// A failed run may leave the app's database on the shared server.
afterAll(() => dropAddonLeftovers(inject('pgAdminUrl'), [app]));

describe('a deployed app with a postgresql add-on', () => {
  it('gets DATABASE_URL in a new release, keeps its data across a deploy, and loses it on destroy', async () => {
    const dir = p.writeApp(app, { 'wsgi.py': WSGI });
    expect((await p.deploy(app, dir)).status).toBe('live');
    expect(await get()).toBe('no database');
    const before = (await latestRelease()).version;

    const created = await p.api<{ addon: AddonView }>('POST', `/v1/apps/${app}/addons`, { kind: 'postgresql' });
    expect(created.status, JSON.stringify(created.json)).toBe(201);
    const rolled = await latestRelease();
    expect(rolled.version).toBe(before + 1);
    expect(rolled.description).toBe('set DATABASE_URL');
    const first = await waitFor(async () => {
      const body = await get();
      return body.startsWith('visits=') ? body : undefined;
    }, { name: 'the new release answers with its database', timeoutMs: 30_000, intervalMs: 200 });
    // (Warm-up requests and health probes count visits too: counts only grow.)
    expect(first).toMatch(new RegExp(`^visits=\\d+ user=addon_${app.replace(/-/g, '_')}_[0-9a-f]{8}$`));
    const count = (body: string): number => Number(/^visits=(\d+) /.exec(body)?.[1]);
    const seen = count(first);
    const second = count(await get());
    expect(second).toBeGreaterThan(seen);

    // A redeploy of the code keeps the database and its rows.
    expect((await p.deploy(app, dir)).status).toBe('live');
    const third = count(await get());
    expect(third).toBeGreaterThan(second);

    // A rollback to the release from before the add-on keeps the add-on's var (add-ons are not rolled back).
    const rollback = await p.api<{ release: Release }>('POST', `/v1/apps/${app}/rollback`, { version: before });
    expect(rollback.status, JSON.stringify(rollback.json)).toBeLessThan(300);
    expect(Object.keys((await p.api<{ vars: Record<string, string> }>('GET', `/v1/apps/${app}/config`)).json.vars)).toContain('DATABASE_URL');
    await waitFor(async () => {
      const release = await latestRelease();
      return release.description === `rollback to v${before}` && release.status === 'live' ? release : undefined;
    }, { name: 'the rollback is live', timeoutMs: 30_000, intervalMs: 200 });
    expect(count(await get())).toBeGreaterThan(third);

    const destroyed = await p.api<{ addon: AddonView }>('DELETE', `/v1/apps/${app}/addons/${created.json.addon.name}`);
    expect(destroyed.json.addon.state).toBe('destroyed');
    expect((await latestRelease()).description).toBe('unset DATABASE_URL');
    await waitFor(async () => ((await get()) === 'no database' ? true : undefined), { name: 'the release without the add-on answers', timeoutMs: 30_000, intervalMs: 200 });
  }, 90_000);
});
