/**
 * The ladder's "answers" (loadLadderState): an instance whose newest probe got no answer still answers while some
 * probe of its runner got an HTTP answer within the last two check intervals, so one lost probe cannot take an app's
 * last serving instance out of rotation; with no answer in that window, it does not.
 */
import { describe, expect, it } from 'vitest';
import { authenticate, createApp, createOwner, createRelease, loadLadderState, placeInstance, registerNode, storeArtifact, withTransaction } from '../../src/db/index.js';
import { randomId } from '../../src/core/ids.js';
import { testDatabase, testPool } from '../helpers/postgres.js';

describe('the ladder state', () => {
  it('counts an instance as answering within two check intervals of its last answered probe, and not after', async () => {
    const pool = testPool(await testDatabase());
    const app = await withTransaction(pool, async (tx) => {
      const { token } = await createOwner(tx, `la-owner-${randomId()}`);
      return createApp(tx, await authenticate(tx, token), `la-app-${randomId(3).toLowerCase()}`);
    });
    const appId = Number((await pool.query<{ id: string }>('SELECT id FROM apps WHERE name = $1', [app.name])).rows[0]!.id);
    const ref = { id: appId, name: app.name };
    const release = await withTransaction(pool, async (tx) => createRelease(tx, ref, await storeArtifact(tx, new Uint8Array([4, 5, 6])), null, 'test'));
    const releaseId = (await pool.query<{ id: number }>('SELECT id FROM releases WHERE app_id = $1 AND version = $2', [appId, release.version])).rows[0]!.id;
    await pool.query('UPDATE apps SET release_id = $2, live_release_id = $2 WHERE id = $1', [appId, releaseId]); // live, not deploying
    const runnerId = `runner-la-${randomId(3).toLowerCase()}`;
    await withTransaction(pool, (tx) => registerNode(tx, { nodeId: runnerId, kind: 'runner', address: '127.0.0.1', info: {} }));
    const instance = (await withTransaction(pool, (tx) => placeInstance(tx, appId, releaseId, runnerId)))!;
    // A check every 1 s: the window is the last 2 s.
    await pool.query("INSERT INTO app_checks (app_id, path, status, interval_ms, timeout_ms) VALUES ($1, '/', NULL, 1000, 500)", [appId]);
    // Its newest probe: no answer (a connection refused during a respawn, say).
    await pool.query(
      `INSERT INTO health_last (app_id, kind, target, from_node, ok, status, error, at, since) VALUES ($1, 'instance', $2, $3, false, NULL, 'connection refused', now(), now())`,
      [appId, instance, runnerId],
    );
    const answers = async (): Promise<boolean | undefined> =>
      (await loadLadderState(pool)).find((a) => a.appId === appId)?.instances.find((i) => i.id === instance)?.answers;
    const probe = (ageMs: number, status: number | null) => pool.query(
      `INSERT INTO health_results (app_id, kind, target, from_node, ok, status, at) VALUES ($1, 'instance', $2, $3, $4, $5, now() - make_interval(secs => $6::float8 / 1000))`,
      [appId, instance, runnerId, status !== null && status < 500, status, ageMs],
    );

    await probe(0, null);
    expect(await answers()).toBe(false); // never answered
    await probe(3000, 200);
    expect(await answers()).toBe(false); // its last answer is older than two intervals
    await probe(1500, 503);
    expect(await answers()).toBe(true); // an HTTP answer (even a 503) 1.5 s ago: it answers
    await pool.end();
  });
});
