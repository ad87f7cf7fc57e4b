/**
 * `pier tokens:rotate` through the real binary against a real nexus: the CLI rotates the token it is using and
 * rewrites the file it read it from (`pier up`'s admin.json in the data folder, or the login file), so it keeps
 * working while the old token is refused; an operator rotates another owner's token and keeps its own.
 */
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { newToken, randomId } from '../../src/core/ids.js';
import { createOwner, ensureAdmin, withTransaction } from '../../src/db/index.js';
import { runCli } from '../helpers/cli.js';
import { searchableTempDir } from '../helpers/data-dir.js';
import { startNexus } from '../helpers/daemons.js';
import { testDatabase, testPool } from '../helpers/postgres.js';

const dbUrl = await testDatabase();
const pool = testPool(dbUrl);
const adminToken = newToken();
await withTransaction(pool, (tx) => ensureAdmin(tx, 'admin', adminToken));
const n = await startNexus(dbUrl, {}, 'file');
const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function status(token: string): Promise<number> {
  return (await fetch(`${n.api}/v1/status`, { headers: { authorization: `Bearer ${token}` } })).status;
}

async function newOwnerToken(): Promise<{ name: string; token: string }> {
  const name = `ap-${randomId(6)}`;
  return withTransaction(pool, async (tx) => ({ name, token: (await createOwner(tx, name)).token }));
}

function tempDir(): string {
  const dir = searchableTempDir('ap-tokens-');
  dirs.push(dir);
  return dir;
}

function storedToken(file: string): string {
  return (JSON.parse(readFileSync(file, 'utf8')) as { token: string }).token;
}

describe('pier tokens:rotate', () => {
  it("rewrites pier up's admin.json with the new token, so the CLI keeps working and the old token is refused", async () => {
    const { token: old } = await newOwnerToken();
    const data = tempDir();
    const file = join(data, 'admin.json');
    writeFileSync(file, `${JSON.stringify({ apiUrls: [n.api], token: old }, null, 2)}\n`, { mode: 0o600 });
    const env = { PIER_DATA: data, XDG_CONFIG_HOME: join(data, 'xdg') };
    const rotated = await runCli(['tokens:rotate'], env);
    expect(rotated.stderr).toBe('');
    expect(rotated.code).toBe(0);
    expect(rotated.stdout).toContain(`saved the new token in ${file}, so this CLI keeps working`);
    const fresh = rotated.stdout.trim().split('\n').pop()!;
    expect(fresh).toMatch(/^pier_/);
    expect(storedToken(file)).toBe(fresh);
    expect(JSON.parse(readFileSync(file, 'utf8')).apiUrls).toEqual([n.api]);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(await status(old)).toBe(401);
    expect(await status(fresh)).toBe(200);
    const apps = await runCli(['apps', '--json'], env);
    expect(apps.stderr).toBe('');
    expect(apps.code).toBe(0);
    expect(JSON.parse(apps.stdout)).toEqual([]);
  });

  it('rewrites the login file the same way, and only says so for PIER_TOKEN', async () => {
    const { name, token: old } = await newOwnerToken();
    const home = tempDir();
    mkdirSync(join(home, 'pier'), { recursive: true });
    const file = join(home, 'pier', 'credentials.json');
    writeFileSync(file, `${JSON.stringify({ apiUrls: [n.api], token: old })}\n`, { mode: 0o600 });
    const env = { PIER_DATA: join(home, 'no-data'), XDG_CONFIG_HOME: home };
    const rotated = await runCli(['tokens:rotate', '--json'], env);
    expect(rotated.code).toBe(0);
    const answer = JSON.parse(rotated.stdout) as { owner: string; token: string; savedIn: string };
    expect(answer).toEqual({ owner: name, token: expect.stringMatching(/^pier_/), savedIn: file });
    expect(storedToken(file)).toBe(answer.token);
    expect(await status(old)).toBe(401);
    expect((await runCli(['status'], env)).code).toBe(0);

    // From PIER_TOKEN there is no file to fix: the CLI says the variable is stale.
    const byEnv = await runCli(['tokens:rotate'], { PIER_API_URL: n.api, PIER_TOKEN: answer.token, XDG_CONFIG_HOME: join(home, 'none'), PIER_DATA: join(home, 'no-data') });
    expect(byEnv.code).toBe(0);
    expect(byEnv.stdout).toContain('PIER_TOKEN still holds the old token: set it to the new one');
    expect(storedToken(file)).toBe(answer.token); // untouched: it was not the token in use
    expect(await status(answer.token)).toBe(401);
  });

  it("lets an operator rotate another owner's token with --owner and keeps the operator's own file as it is", async () => {
    const { name, token: bobs } = await newOwnerToken();
    const data = tempDir();
    const file = join(data, 'admin.json');
    writeFileSync(file, `${JSON.stringify({ apiUrls: [n.api], token: adminToken })}\n`, { mode: 0o600 });
    const env = { PIER_DATA: data, XDG_CONFIG_HOME: join(data, 'xdg') };
    const rotated = await runCli(['tokens:rotate', '--owner', name], env);
    expect(rotated.code).toBe(0);
    expect(rotated.stdout).not.toContain('saved');
    const fresh = rotated.stdout.trim().split('\n').pop()!;
    expect(await status(bobs)).toBe(401);
    expect(await status(fresh)).toBe(200);
    expect(storedToken(file)).toBe(adminToken);
    expect(await status(adminToken)).toBe(200);
    // An owner naming someone else gets the API's one-line 403.
    const bobEnv = { PIER_API_URL: n.api, PIER_TOKEN: fresh, XDG_CONFIG_HOME: join(data, 'none'), PIER_DATA: data };
    const denied = await runCli(['tokens:rotate', '--owner', 'admin'], bobEnv);
    expect(denied.code).not.toBe(0);
    expect(denied.stderr.trim().split('\n')).toHaveLength(1);
    expect(denied.stderr).toContain('PIER_FORBIDDEN');
    expect(await status(adminToken)).toBe(200);
  });
});
