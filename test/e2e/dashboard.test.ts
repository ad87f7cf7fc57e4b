/**
 * The dashboard in real headless Chromium (Debian's, driven by playwright-core) against a real platform: an owner
 * with an app and two deploys (one with markup in its description), signing in with the token. The page loads
 * under a strict CSP (script from its own file, no inline script), the owner sees the app, its deploys, its health
 * and its explain timeline; markup shows as text and never runs; the token never appears in a URL; a screenshot
 * lands in the test's temp folder; sign-out forgets the token.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packDirectory } from '../../src/archive/index.js';
import { randomId } from '../../src/core/ids.js';
import type { Release } from '../../src/protocol/index.js';
import { startChromium, pidsWith, type ChromiumHandle } from '../helpers/chromium.js';
import { platformForFile } from '../helpers/platform.js';
import { waitFor } from '../helpers/wait.js';

const APP = `dash${randomId().slice(0, 6)}-web`;
const p = platformForFile({ prefix: 'dash', apps: [APP] });
/** An owner-chosen release description: markup that would run if the page ever used innerHTML. */
const HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>';
const APP_SOURCE = 'def application(environ, start_response):\n    start_response("200 OK", [("Content-Type", "text/plain")])\n    return [b"ok"]\n';

let chromium: ChromiumHandle | undefined;
let context: BrowserContext;
let page: Page;
const requested: Array<{ url: string; authorization: string | undefined }> = [];

/** The page's elements as the row reader uses them (the tests' tsconfig has no DOM types). */
type Cells = { querySelectorAll(selector: string): ArrayLike<{ textContent: string | null }> };

/** The text of each row of a table body, cell by cell. */
async function rows(id: string): Promise<string[][]> {
  return page.$$eval(`#${id} tr`, (trs) => trs.map((tr) => Array.from((tr as unknown as Cells).querySelectorAll('td'), (td) => td.textContent ?? '')));
}

async function deployWithDescription(description: string): Promise<Release> {
  const up = await p.api<{ release: Release }>('POST', `/v1/apps/${APP}/releases?description=${encodeURIComponent(description)}`,
    await packDirectory(p.writeApp('v2', { 'wsgi.py': APP_SOURCE })));
  expect(up.status).toBe(201);
  return waitFor(async () => {
    const { release } = (await p.api<{ release: Release }>('GET', `/v1/apps/${APP}/releases/v${up.json.release.version}`)).json;
    return release.status === 'pending' ? undefined : release;
  }, { name: 'v2 settled', timeoutMs: 30_000, intervalMs: 100 });
}

beforeAll(async () => {
  expect(await p.deploy(APP, p.writeApp('v1', { 'wsgi.py': APP_SOURCE }))).toMatchObject({ version: 1, status: 'live' });
  expect(await deployWithDescription(HOSTILE)).toMatchObject({ version: 2, status: 'live' });
  chromium = await startChromium(p.dir);
  context = await chromium.browser.newContext({ viewport: { width: 1280, height: 1000 } });
  page = await context.newPage();
  page.on('request', (r) => requested.push({ url: r.url(), authorization: r.headers().authorization }));
}, 90_000);

afterAll(async () => {
  const profile = chromium?.userDataDir;
  await chromium?.stop();
  if (profile) expect(pidsWith(profile)).toEqual([]);
}, 30_000);

describe('dashboard in Chromium', () => {
  it('serves the page and its script under a strict CSP, with no inline script', async () => {
    const res = await page.goto(p.nexus.api + '/');
    expect(res?.status()).toBe(200);
    const csp = res!.headers()['content-security-policy']!;
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    expect(csp).not.toContain('unsafe-eval');
    expect(res!.headers()['x-content-type-options']).toBe('nosniff');
    expect(await page.$$eval('script', (s) => s.map((x) => x.getAttribute('src')))).toEqual(['/dashboard.js']);
    const script = await fetch(p.nexus.api + '/dashboard.js');
    expect(script.headers.get('content-type')).toMatch(/^text\/javascript/);
    expect(await page.isVisible('#signin')).toBe(true);
    expect(await page.isVisible('#board')).toBe(false);
  });

  it('refuses a wrong token in one line and stays signed out', async () => {
    await page.fill('#token', 'pier_not-a-token');
    await page.click('#signin-button');
    await page.waitForSelector('#signin:not([hidden])', { timeout: 10_000 });
    await waitFor(async () => ((await page.textContent('#error')) ?? '').startsWith('that token was refused: ') || undefined, {
      name: 'refusal shown', timeoutMs: 10_000, intervalMs: 100,
    });
    expect(await page.isVisible('#board')).toBe(false);
    expect(await page.evaluate('sessionStorage.length')).toBe(0);
  });

  it('signs in with the token and sees the app with its formation, live release and health', async () => {
    await page.fill('#token', p.tokens.owner);
    await page.click('#signin-button');
    await page.waitForSelector(`#apps tr[data-app="${APP}"]`, { timeout: 10_000 });
    expect(await page.textContent('#summary')).toMatch(/^signed in as dash-owner-/);
    await waitFor(async () => {
      const row = (await rows('apps')).find((r) => r[0] === APP);
      return row && row[4] === 'v2' && row[5] === '1/1 healthy' ? row : undefined;
    }, { name: 'app row with its live release', timeoutMs: 10_000, intervalMs: 200 });
    const row = (await rows('apps')).find((r) => r[0] === APP)!;
    expect(row.slice(0, 6)).toEqual([APP, expect.stringMatching(/^dash-owner-/), '-', 'web=1', 'v2', '1/1 healthy']);
    // An owner sees no nodes.
    expect(await page.isVisible('#nodes-section')).toBe(false);
  });

  it('shows the alerts panel: empty while nothing is wrong, then the alert raised when the app fails its check', async () => {
    expect(await rows('alerts')).toEqual([['no alerts']]);
    // The app answers 200 everywhere; a check that expects 204 makes its only instance unhealthy (alert only: the
    // last serving instance stays in rotation while it answers).
    expect((await p.api('PUT', `/v1/apps/${APP}/checks`, { path: '/', status: 204, intervalMs: 1000, timeoutMs: 500 })).status).toBe(200);
    const alert = await waitFor(async () => (await rows('alerts')).find((r) => r[0] === APP && r[4] === 'active'), {
      name: 'the alert on the dashboard', timeoutMs: 20_000, intervalMs: 250,
    });
    expect(alert[1]).toMatch(new RegExp(`^${APP}-v2-`));
    expect(alert[2]).toContain('answered 200 (expected 204)');
  });

  it('shows the selected app: its instance, its deploys and the explain timeline', async () => {
    await page.waitForSelector('#detail:not([hidden])', { timeout: 10_000 });
    expect(await page.textContent('#app-title')).toBe(APP);
    const deploys = await rows('deploys');
    expect(deploys.map((r) => r.slice(0, 2))).toEqual([['v2', 'live'], ['v1', 'superseded']]);
    const health = await rows('health');
    expect(health).toHaveLength(1);
    expect(health[0]!.slice(1, 5)).toEqual(['web', 'v2', p.runner.id, 'ready']);
    const timeline = await waitFor(async () => {
      const got = await rows('timeline');
      return got.some((r) => r[1] === 'deploy' && r[3] === 'v2 live: balancers route to it') ? got : undefined;
    }, { name: 'timeline with v2 live', timeoutMs: 10_000, intervalMs: 200 });
    // Newest first on the page; the deploy entries of both releases are there.
    expect(timeline.some((r) => r[1] === 'deploy' && r[2] === 'v1' && /^v1 created by dash-owner-/.test(r[3]!))).toBe(true);
    expect(timeline.some((r) => r[1] === 'instance' && r[2] === 'v2' && / ready on /.test(r[3]!))).toBe(true);
    const times = timeline.map((r) => Date.parse(r[0]!));
    expect(times.every((t, i) => i === 0 || t <= times[i - 1]!)).toBe(true);
  });

  it('shows markup from an owner as text and never runs it', async () => {
    const deploy = (await rows('deploys')).find((r) => r[0] === 'v2')!;
    expect(deploy[2]).toBe(HOSTILE);
    expect((await rows('timeline')).some((r) => r[3] === `v2 created by ${deploy[3]}: ${HOSTILE}`)).toBe(true);
    expect(await page.evaluate('typeof window.__pwned')).toBe('undefined');
    expect(await page.$$('#board img, #board script')).toHaveLength(0);
  });

  it('never puts the token in a URL and sends it only in the Authorization header', async () => {
    expect(requested.some((r) => r.url.includes('/v1/status') && r.authorization === `Bearer ${p.tokens.owner}`)).toBe(true);
    expect(requested.filter((r) => r.url.includes(p.tokens.owner))).toEqual([]);
    expect(page.url()).not.toContain(p.tokens.owner);
    expect(await page.evaluate('localStorage.length')).toBe(0);
  });

  it('writes a screenshot of the signed-in page to the test folder', async () => {
    const file = join(p.dir, 'dashboard.png');
    await page.screenshot({ path: file, fullPage: true });
    expect(existsSync(file)).toBe(true);
    const bytes = readFileSync(file);
    expect(bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))).toBe(true);
    expect(statSync(file).size).toBeGreaterThan(20_000);
  });

  it('signs out: the token is forgotten and the board is gone', async () => {
    await page.click('#signout');
    expect(await page.isVisible('#signin')).toBe(true);
    expect(await page.isVisible('#board')).toBe(false);
    expect(await page.evaluate('sessionStorage.length')).toBe(0);
    expect(await rows('apps')).toEqual([]);
    await page.reload();
    expect(await page.isVisible('#signin')).toBe(true);
  });

  it('shows an operator the nodes: kind, status, leader', async () => {
    await page.fill('#token', p.tokens.admin);
    await page.click('#signin-button');
    await page.waitForSelector('#nodes-section:not([hidden])', { timeout: 10_000 });
    const nodes = await waitFor(async () => {
      const got = await rows('nodes');
      return got.some((r) => r[0] === p.runner.id) ? got : undefined;
    }, { name: 'nodes listed', timeoutMs: 10_000, intervalMs: 200 });
    expect(nodes.find((r) => r[0] === p.runner.id)!.slice(1, 3)).toEqual(['runner', 'alive']);
    expect(nodes.some((r) => r[1] === 'nexus' && r[3] === 'leader')).toBe(true);
    expect(await page.textContent('#summary')).toMatch(/^signed in as dash-admin-.* \(operator\)/);
    await page.click('#signout');
  });
});
