/**
 * A real Django site end to end (issue #13, Must show 1): an unmodified `startproject` site (Debian python3-django
 * 3.2) plus the usual production edits (test/fixtures/django), driven only through the `pier` CLI and reached only
 * through the balancer over real HTTP, the way a browser does: add-on database, config vars, deploy (build runs
 * collectstatic, release runs migrate), a worker, `pier run` createsuperuser, the admin login with Django's CSRF
 * cookie and token, the admin CSS served from the release with 304s on revalidation, a note written through the web
 * and marked by the worker, and a second deploy that keeps the data. ALLOWED_HOSTS names only the app's hostname,
 * with a health check on /admin/login/ expecting 200: the runner's probes, warm-up and checks must send that Host.
 * App names start with `dj`.
 */
import { execFileSync } from 'node:child_process';
import { appendFileSync, cpSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { request } from 'undici';
import { describe, expect, it, onTestFinished } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import type { HealthReply } from '../../src/protocol/index.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { platformForFile } from '../helpers/platform.js';
import { waitFor } from '../helpers/wait.js';

const isRoot = process.getuid?.() === 0;
const FIXTURES = fileURLToPath(new URL('../fixtures/django/', import.meta.url));
const apps: string[] = [];
// Instance ports of their own (below the ephemeral range, apart from the other files' runners).
const base = 16000 + (process.pid % 50) * 40;
const p = platformForFile({ prefix: 'dj', apps, runner: { portMin: base, portMax: base + 39, stopGraceMs: 3000 } });

function cli(args: string[]): Promise<CliResult> {
  return runCli(args, { PIER_API_URL: p.nexus.api, PIER_TOKEN: p.tokens.owner }, 120_000);
}

/** `cli` that must succeed (its stderr shown when it does not). */
async function ok(args: string[]): Promise<CliResult> {
  const ran = await cli(args);
  expect({ args, code: ran.code, stderr: ran.stderr }).toEqual({ args, code: 0, stderr: '' });
  return ran;
}

/**
 * `django-admin startproject mysite` into a fresh folder, then the production edits a Django user makes: settings
 * from config vars (appended to settings.py), the notes app, its URLs, a worker and the Procfile.
 */
function writeSite(): string {
  const dir = join(p.dir, 'src', `mysite-${randomId()}`);
  mkdirSync(dir, { recursive: true });
  // Debian's interpreter: the `python3` on PATH may be another one, without Django.
  execFileSync('/usr/bin/python3', ['-m', 'django', 'startproject', 'mysite', dir]);
  appendFileSync(join(dir, 'mysite', 'settings.py'), readFixture('settings_production.py'));
  appendFileSync(join(dir, 'mysite', 'urls.py'), readFixture('urls_notes.py'));
  for (const item of ['notes', 'worker.py', 'Procfile']) cpSync(join(FIXTURES, item), join(dir, item), { recursive: true });
  return dir;
}

function readFixture(name: string): string {
  return readFileSync(join(FIXTURES, name), 'utf8');
}

/** A browser's cookie jar for one host (names → values; no paths, no expiry: enough for Django's two cookies). */
class Jar {
  readonly cookies = new Map<string, string>();
  take(setCookie: string | string[] | undefined): void {
    for (const line of [setCookie ?? []].flat()) {
      const [pair] = line.split(';');
      const at = pair!.indexOf('=');
      this.cookies.set(pair!.slice(0, at).trim(), pair!.slice(at + 1).trim());
    }
  }
  header(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
}

interface Page { status: number; headers: Record<string, string | string[] | undefined>; body: string }

describe.runIf(isRoot)('a Django site on Pier', () => {
  it('deploys startproject with a database, a worker and static files; the admin logs in through the balancer; a second deploy keeps the data', async () => {
    const app = `dj${randomId()}-site`;
    apps.push(app);
    // Destroying the app drops its add-on's database and role too.
    onTestFinished(async () => {
      await p.api('DELETE', `/v1/apps/${app}`); // a 404 once the test destroyed it
    });
    const host = `${app}.localhost:${p.balancer.port}`;
    const origin = `http://${host}`;

    /** One HTTP request through the balancer, as a browser sends it (Host with the port, the jar's cookies). */
    async function browse(method: 'GET' | 'POST', path: string, jar: Jar, extra: { form?: Record<string, string>; headers?: Record<string, string> } = {}): Promise<Page> {
      const headers: Record<string, string> = { host, 'user-agent': 'pier-e2e', ...extra.headers };
      if (jar.cookies.size > 0) headers.cookie = jar.header();
      let body: string | undefined;
      if (extra.form) {
        body = new URLSearchParams(extra.form).toString();
        headers['content-type'] = 'application/x-www-form-urlencoded';
      }
      const res = await request(`http://127.0.0.1:${p.balancer.port}${path}`, { method, headers, body });
      jar.take(res.headers['set-cookie']);
      return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
    }

    /** The admin login as a browser does it: GET the form, POST it with the CSRF cookie and token, follow the 302. */
    async function logIn(password: string): Promise<{ firstPageMs: number; jar: Jar }> {
      const jar = new Jar();
      const started = performance.now();
      const form = await browse('GET', '/admin/login/?next=/admin/', jar);
      const firstPageMs = performance.now() - started;
      expect(form.status).toBe(200);
      expect(form.body).toContain('Django administration');
      const token = /name="csrfmiddlewaretoken" value="([^"]+)"/.exec(form.body)?.[1];
      expect(token).toBeDefined();
      expect(jar.cookies.get('csrftoken')).toBeDefined();
      const posted = await browse('POST', '/admin/login/?next=/admin/', jar, {
        form: { csrfmiddlewaretoken: token!, username: 'ada', password, next: '/admin/' },
        headers: { origin, referer: `${origin}/admin/login/?next=/admin/` },
      });
      expect({ status: posted.status, location: posted.headers.location }).toEqual({ status: 302, location: '/admin/' });
      expect(jar.cookies.get('sessionid')).toBeDefined();
      const admin = await browse('GET', '/admin/', jar);
      expect(admin.status).toBe(200);
      expect(admin.body).toContain('Site administration');
      expect(admin.body).toMatch(/Welcome,\s*<strong>ada<\/strong>/);
      return { firstPageMs, jar };
    }

    await ok(['apps:create', app]);
    const database = await ok(['addons:create', 'postgresql', '-a', app]);
    expect(database.stdout).toMatch(new RegExp(`^created \\S+ for ${app}; DATABASE_URL is set`));
    await ok(['config:set', '-a', app,
      `SECRET_KEY=${randomId(8)}${randomId(8)}${randomId(8)}`,
      // Only its own name: the runner's probes and checks must use it too.
      `DJANGO_ALLOWED_HOSTS=${app}.localhost`,
      `CSRF_TRUSTED_ORIGINS=${host}`,
      'DJANGO_SUPERUSER_USERNAME=ada', 'DJANGO_SUPERUSER_EMAIL=ada@example.com', 'DJANGO_SUPERUSER_PASSWORD=correct-horse-battery',
    ]);

    // A check Django answers only for hosts it allows: the runner's probes must send the app's hostname.
    await ok(['checks:set', '/admin/login/', '--status', '200', '--interval', '1s', '-a', app]);
    const site = writeSite();
    const deployStarted = performance.now();
    const first = await ok(['deploy', site, '-a', app]);
    const deploySeconds = (performance.now() - deployStarted) / 1000;
    expect(first.stdout).toMatch(/\d+ static files copied to '.*\/staticfiles'/);
    expect(first.stdout).toContain('Applying notes.0001_initial... OK');
    expect(first.stdout).toMatch(/v\d+ is live in [\d.]+ s/);

    await ok(['ps:scale', 'worker=1', '-a', app]);
    const superuser = await ok(['run', '-a', app, '--', 'python', 'manage.py', 'createsuperuser', '--noinput']);
    expect(superuser.stdout).toContain('Superuser created successfully.');

    const { firstPageMs } = await logIn('correct-horse-battery');

    // The admin's CSS comes from the release's staticfiles/ (collectstatic in the build phase) through the Procfile's
    // static: line, not from Django (which serves no static files with DEBUG off); browsers revalidate it with 304s.
    const cssPath = '/static/admin/css/base.css';
    const css = await browse('GET', cssPath, new Jar());
    expect(css.status).toBe(200);
    expect(String(css.headers['content-type'])).toMatch(/^text\/css/);
    expect(css.body).toContain('DJANGO Admin styles');
    const lastModified = String(css.headers['last-modified']);
    const etag = String(css.headers.etag);
    expect(new Date(lastModified).getTime()).toBeGreaterThan(0);
    expect(etag).toMatch(/^(W\/)?"[^"]+"$/);
    expect((await browse('GET', cssPath, new Jar(), { headers: { 'if-modified-since': lastModified } })).status).toBe(304);
    expect((await browse('GET', cssPath, new Jar(), { headers: { 'if-none-match': etag } })).status).toBe(304);
    // The admin login page links exactly that file.
    expect((await browse('GET', '/admin/login/', new Jar())).body).toContain(`href="${cssPath}"`);

    // A note written through the web; the worker marks it seen.
    const added = await browse('POST', '/notes/add/', new Jar(), { form: { text: 'hello from the web: grüße ✓' } });
    expect(added.status).toBe(201);
    const noteId = (JSON.parse(added.body) as { id: number }).id;
    interface Notes { edition: number; notes: Array<{ id: number; text: string; seen: boolean; seen_by: string }> }
    const notes = async (): Promise<Notes> => {
      const page = await browse('GET', '/notes/', new Jar());
      expect(page.status).toBe(200);
      return JSON.parse(page.body) as Notes;
    };
    const seenAt = performance.now();
    const seen = await waitFor(async () => {
      const list = await notes();
      return list.notes.find((n) => n.id === noteId && n.seen);
    }, { name: 'the worker marks the note seen', timeoutMs: 10_000, intervalMs: 200 });
    const workerMs = performance.now() - seenAt;
    expect(seen).toEqual({ id: noteId, text: 'hello from the web: grüße ✓', seen: true, seen_by: 'worker.1' });

    // The runner's checks pass (its Host is the app's hostname), on the web instance and through the balancer, and
    // nothing in the logs says Django refused a host: the probes and the warm-up sent an allowed one too.
    const health = await waitFor(async () => {
      const h = (await p.api<HealthReply>('GET', `/v1/apps/${app}/health`)).json;
      const web = h.instances.filter((i) => i.healthy === true && i.status === 200);
      return web.length === 1 && h.hostnames.some((n) => n.healthy === true) ? h : undefined;
    }, { name: 'the web instance and the hostname healthy', timeoutMs: 10_000, intervalMs: 200 });
    expect(health.check.path).toBe('/admin/login/');
    const logs = await waitFor(async () => {
      const ran = await ok(['logs', '-a', app, '-n', '2000']);
      return ran.stdout.includes(`worker.1 saw note ${noteId}`) ? ran.stdout : undefined;
    }, { name: "the worker's line in pier logs", timeoutMs: 10_000, intervalMs: 300 });
    expect(logs).not.toContain('Invalid HTTP_HOST header');

    // A second deploy (a bumped setting): the note and the superuser are still there.
    const next = writeSite();
    appendFileSync(join(next, 'mysite', 'settings.py'), '\nNOTES_EDITION = 2\n');
    const redeployStarted = performance.now();
    const second = await ok(['deploy', next, '-a', app]);
    const redeploySeconds = (performance.now() - redeployStarted) / 1000;
    expect(second.stdout).toContain('No migrations to apply.');
    const after = await notes();
    expect(after.edition).toBe(2);
    expect(after.notes).toEqual([seen]);
    await logIn('correct-horse-battery');

    // apps:destroy takes the add-on's database and role with it.
    const databaseUrl = new URL(JSON.parse((await ok(['config', '-a', app, '--json'])).stdout).DATABASE_URL as string);
    const pgAdmin = new pg.Client({ connectionString: p.dbUrl });
    await pgAdmin.connect();
    try {
      const leftovers = async (): Promise<unknown> => (await pgAdmin.query(
        'SELECT (SELECT count(*) FROM pg_database WHERE datname = $1)::int AS dbs, (SELECT count(*) FROM pg_roles WHERE rolname = $2)::int AS roles',
        [databaseUrl.pathname.slice(1), decodeURIComponent(databaseUrl.username)],
      )).rows[0];
      expect(await leftovers()).toEqual({ dbs: 1, roles: 1 });
      await ok(['apps:destroy', app, '--confirm', app]);
      expect(await leftovers()).toEqual({ dbs: 0, roles: 0 });
    } finally {
      await pgAdmin.end();
    }

    console.log(`[django] deploy ${deploySeconds.toFixed(1)} s, first admin page ${firstPageMs.toFixed(0)} ms, worker saw the note in ${workerMs.toFixed(0)} ms, second deploy ${redeploySeconds.toFixed(1)} s`);
  }, 150_000);
});
