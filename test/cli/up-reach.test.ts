/**
 * `pier up` in a data folder another user cannot reach (under /root, a `mktemp -d` folder): one line naming the
 * folder and the fix, exit 78, and nothing made, whether detached or not.
 */
import { readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { privateTempDir } from '../helpers/data-dir.js';

const made: string[] = [];
function privateDir(): string {
  const dir = privateTempDir('pier-fr-up-');
  made.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const env = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({ PIER_DB_URL: '', DATABASE_URL: '', ...extra });

describe('pier up (folders handed to other users)', () => {
  it('refuses a --data folder under a private folder with one line naming it and the fix, making nothing', async () => {
    const root = privateDir();
    for (const args of [['up', '--detach', '--data', join(root, 'pier')], ['up', '--data', join(root, 'deeper', 'pier')]]) {
      const result = await runCli(args, env({ XDG_CONFIG_HOME: join(root, 'xdg') }));
      const dataDir = args.at(-1)!;
      expect(result.stderr, args.join(' ')).toBe(
        `error: the embedded PostgreSQL runs as 'postgres', which cannot reach '${join(dataDir, 'postgres')}': '${root}' is not searchable by others; run 'chmod o+x ${root}' or choose another --data folder (PIER_CONFIG)\n`,
      );
      expect(result.code).toBe(78);
      expect(result.stdout).toBe('');
      expect(readdirSync(root)).toEqual([]);
    }
  });

  it('refuses an existing private --data folder by name, without opening it up', async () => {
    const dataDir = privateDir();
    const result = await runCli(['up', '--detach', '--data', dataDir], env());
    expect(result.stderr).toBe(
      `error: the embedded PostgreSQL runs as 'postgres', which cannot reach '${join(dataDir, 'postgres')}': '${dataDir}' is not searchable by others; run 'chmod o+x ${dataDir}' or choose another --data folder (PIER_CONFIG)\n`,
    );
    expect(readdirSync(dataDir)).toEqual([]);
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
  });

  it("names the runner's folder for app users when PostgreSQL is external", async () => {
    const root = privateDir();
    const dataDir = join(root, 'pier');
    const result = await runCli(['up', '--detach', '--data', dataDir], env({ PIER_DB_URL: 'postgres://pier@127.0.0.1:1/pier' }));
    expect(result.stderr).toBe(
      `error: apps run as their own users, who cannot reach '${join(dataDir, 'runner-runner-1')}': '${root}' is not searchable by others; run 'chmod o+x ${root}', move the data folder, or set runner.appUsers = false (PIER_CONFIG)\n`,
    );
    expect(readdirSync(root)).toEqual([]);
  });
});
