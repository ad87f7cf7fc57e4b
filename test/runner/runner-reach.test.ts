/** The runner refuses a folder its app users cannot reach, naming it and the fix, before it makes anything. */
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/logger.js';
import { Runner } from '../../src/runner/runner.js';
import { testConfig } from '../helpers/config.js';
import { privateTempDir } from '../helpers/data-dir.js';

const made: string[] = [];
afterEach(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('runner (app users)', () => {
  it('refuses a data folder under a private folder with one line naming it and the fix', async () => {
    const root = privateTempDir('pier-fr-runner-');
    made.push(root);
    const dataDir = join(root, 'data');
    const runner = new Runner({ config: testConfig({ dataDir, runner: { id: 'fr-reach', appUsers: true } }), log: silentLogger() });
    const err = (await runner.start().catch((e: unknown) => e)) as Error & { code?: string };
    expect(err.code).toBe('PIER_CONFIG');
    expect(err.message).toBe(
      `apps run as their own users, who cannot reach '${join(dataDir, 'runner-fr-reach')}': '${root}' is not searchable by others; run 'chmod o+x ${root}', move the data folder, or set runner.appUsers = false`,
    );
    expect(readdirSync(root)).toEqual([]);
    await runner.stop();
  });
});
