/**
 * `instance.released`: a runner's `stopped` report for an instance the state forgot (its runner was declared dead
 * while it served) tells the balancers to let go of it; a report for an id the state never forgot tells nothing.
 */
import { describe, expect, it } from 'vitest';
import { authenticate, registerNode, createApp, createOwner, createRelease, eventsSince, forgetInstance, placeInstance, reportInstance, storeArtifact, withTransaction } from '../../src/db/index.js';
import { randomId } from '../../src/core/ids.js';
import { testDatabase, testPool } from '../helpers/postgres.js';

describe('instance.released', () => {
  it('is appended when a runner reports stopped a forgotten instance, with its app and the runner, and only then', async () => {
    const pool = testPool(await testDatabase());
    const app = await withTransaction(pool, async (tx) => {
      const { token } = await createOwner(tx, `fc-owner-${randomId()}`);
      return createApp(tx, await authenticate(tx, token), `fc-rel-${randomId(3).toLowerCase()}`);
    });
    const appRef = { id: (await pool.query<{ id: number }>('SELECT id FROM apps WHERE name = $1', [app.name])).rows[0]!.id, name: app.name };
    const release = await withTransaction(pool, async (tx) => createRelease(tx, appRef, await storeArtifact(tx, new Uint8Array([1, 2, 3])), null, 'test'));
    const releaseId = (await pool.query<{ id: number }>('SELECT id FROM releases WHERE app_id = $1 AND version = $2', [appRef.id, release.version])).rows[0]!.id;
    const runnerId = `runner-fc-${randomId(3).toLowerCase()}`;
    await withTransaction(pool, (tx) => registerNode(tx, { nodeId: runnerId, kind: 'runner', address: '127.0.0.1', info: {} }));
    const [kept, forgotten] = await withTransaction(pool, async (tx) => [
      await placeInstance(tx, appRef.id, releaseId, runnerId), await placeInstance(tx, appRef.id, releaseId, runnerId),
    ]);
    await withTransaction(pool, (tx) => forgetInstance(tx, forgotten!));
    const { rows } = await pool.query<{ id: string }>('SELECT max(id)::text AS id FROM events');
    const from = Number(rows[0]!.id);

    // A stopped report for an id never forgotten, then for the forgotten one, then the kept one's normal stop.
    await withTransaction(pool, (tx) => reportInstance(tx, runnerId, `${app.name}-v1-nope`, 'stopped', null, null));
    await withTransaction(pool, (tx) => reportInstance(tx, runnerId, forgotten!, 'stopped', null, null));
    await withTransaction(pool, (tx) => reportInstance(tx, runnerId, kept!, 'stopped', null, null));
    const events = (await eventsSince(pool, from, 100)).map((e) => ({ type: e.type, app: e.app, data: e.data }));
    expect(events).toEqual([
      { type: 'instance.released', app: app.name, data: { id: forgotten, runnerId } },
      { type: 'instance.removed', app: app.name, data: { id: kept } },
    ]);
    await pool.end();
  });
});
