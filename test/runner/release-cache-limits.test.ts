/**
 * The runner's side of attack 5 (issue #10): the deep-path tarball used to burn a runner core at 1.3 GB for
 * minutes while every other deploy on it waited. Should such an artifact ever reach a runner (stored before the
 * API checked paths, or written to the database some other way), its release cache fetches it from a real nexus
 * over the control protocol and the unpacker refuses it in linear time, naming the limit, writing nothing.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/logger.js';
import { ValidationError } from '../../src/core/errors.js';
import { storeArtifact, withTransaction } from '../../src/db/index.js';
import { ReleaseCache } from '../../src/runner/release-cache.js';
import { tarGz } from '../archive/fixtures.js';
import { controlClient, startNexus } from '../helpers/daemons.js';
import { searchableTempDir } from '../helpers/data-dir.js';
import { testDatabase, testPool } from '../helpers/postgres.js';

const dbUrl = await testDatabase();
const pool = testPool(dbUrl);
const dir = searchableTempDir('pier-ar-cache-');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('ReleaseCache under the archive limits', () => {
  it('refuses a deep-path artifact fetched from the nexus in linear time and unpacks nothing', async () => {
    const n = await startNexus(dbUrl);
    const app = `ar-${Date.now().toString(36)}`;
    const wsgi = { name: 'wsgi.py', data: 'application = None\n' };
    const bytes = tarGz([wsgi, ...[1, 2, 3, 4].map((i) => ({ name: `${'a/'.repeat(20_000)}${i}.py`, data: 'x' }))]);
    const sha256 = await withTransaction(pool, (tx) => storeArtifact(tx, bytes));
    expect(sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
    const cache = new ReleaseCache({ dir, control: controlClient([n.control], 2000), pipArgs: [], buildTimeoutMs: 10_000, log: silentLogger() });
    const spec = { instanceId: 'i-1', app, release: 1, sha256, sizeBytes: bytes.length, processType: 'web', config: {}, runnerId: 'runner-ar', state: 'starting' };

    const started = performance.now();
    const err = await cache.prepare(spec).then(() => undefined, (e: unknown) => e);
    const ms = performance.now() - started;
    console.log(`runner: deep-path artifact (${bytes.length} bytes, four 40 KB paths) fetched and refused in ${ms.toFixed(1)} ms`);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as Error).message).toMatch(/^archive entry 'a\/a\/.*…' is 40004 bytes long, over the 1024-byte limit for a path; /);
    expect(ms).toBeLessThan(1000);
    const releaseDir = join(dir, 'releases', app, sha256.slice(0, 16));
    expect(existsSync(join(releaseDir, 'app'))).toBe(false);
    expect(existsSync(releaseDir) ? readdirSync(releaseDir) : []).toEqual([]);
  });
});
