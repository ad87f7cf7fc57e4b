/**
 * Integrity checks (issue #11, Must show 4), all real: a runner whose vassal file was removed by hand (and one
 * given a vassal no instance owns) repairs its emperor's folder within one integrity interval; a balancer whose
 * route table went stale is told to reload it within one interval; both count it, and `GET /v1/nodes` (what
 * `pier nodes` and `pier status` print) shows the counts.
 *
 * How the balancer's table is made stale, honestly: a hostname row is written straight into PostgreSQL, without
 * its event — what an operator's hand-made SQL fix, a restored backup or a code path that forgets its event does.
 * No event reaches the balancer, so at the same event version its table lacks the host while the state has it:
 * exactly the drift the digest exists to find. Nothing in the balancer is touched or faked.
 */
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, onTestFinished } from 'vitest';
import type { Node } from '../../src/protocol/index.js';
import { send } from '../balancer/helpers.js';
import { platformForFile } from '../helpers/platform.js';
import { createPool } from '../../src/db/index.js';
import { silentLogger } from '../../src/core/logger.js';
import { sleep, waitFor } from '../helpers/wait.js';

const INTERVAL_MS = 1000;
/** The check runs every interval; a repair lands within one interval of the drift plus the check's own I/O. */
const REPAIR_BUDGET_MS = INTERVAL_MS + 500;
const APP = 'ch-integrity';
const HELLO = fileURLToPath(new URL('../../examples/hello', import.meta.url));
const p = platformForFile({ apps: [APP], prefix: 'ch', cluster: { integrityIntervalMs: INTERVAL_MS } });

async function nodes(): Promise<Node[]> {
  return (await p.admin<{ nodes: Node[] }>('GET', '/v1/nodes')).json.nodes;
}

describe('integrity checks', () => {
  it('a vassal removed by hand is written again and an extra one removed within one interval, counted', async () => {
    expect((await p.deploy(APP, HELLO)).status).toBe('live');
    const [instance] = await p.readyInstances(APP);
    const vassals = join(p.runner.dir, 'emperor', 'vassals');
    const file = join(vassals, `${instance!.id}.ini`);
    const integrity = p.runner.integrity!;
    // Nothing to repair in a healthy runner.
    await sleep(INTERVAL_MS * 2);
    expect(integrity.repairs).toBe(0);

    const before = integrity.repairs;
    rmSync(file);
    const removedAt = Date.now();
    await waitFor(() => existsSync(file) && integrity.counts.missing === 1, { name: 'the vassal written again', timeoutMs: 10_000, intervalMs: 10 });
    const missingMs = Date.now() - removedAt;
    // The emperor runs it again: the app answers through the balancer.
    await waitFor(async () => (await send(p.balancer.port!, `${APP}.localhost`)).status === 200, { name: 'the app answers again', timeoutMs: 15_000, intervalMs: 100 });

    // A vassal no instance of this runner owns (left by hand, or by an older runner) is removed.
    const extra = join(vassals, 'ch-stray.ini');
    writeFileSync(extra, '[uwsgi]\nmaster = false\n', { mode: 0o600 });
    const strayAt = Date.now();
    await waitFor(() => !existsSync(extra) && integrity.counts.extra === 1, { name: 'the stray vassal removed', timeoutMs: 10_000, intervalMs: 10 });
    const extraMs = Date.now() - strayAt;

    await waitFor(async () => (await nodes()).find((n) => n.id === p.runner.id)?.repairs === before + 2, { name: 'pier nodes shows 2 repairs', timeoutMs: 5000, intervalMs: 100 });
    console.log(`[integrity] runner: vassal removed by hand written again after ${missingMs} ms, stray vassal removed after ${extraMs} ms (interval ${INTERVAL_MS} ms)`);
    expect(missingMs).toBeLessThanOrEqual(REPAIR_BUDGET_MS);
    expect(extraMs).toBeLessThanOrEqual(REPAIR_BUDGET_MS);
    expect(integrity.counts).toEqual({ missing: 1, changed: 0, extra: 1, 'not running': 0 });
  }, 60_000);

  it('a balancer whose table went stale (a hostname written to PostgreSQL without its event) reloads it within one interval, counted', async () => {
    const balancer = p.balancer;
    const port = balancer.port!;
    const host = 'ch-direct.example.com';
    // A healthy table matches the state: no reload so far.
    await sleep(INTERVAL_MS * 2);
    expect(balancer.repairs).toBe(0);
    expect((await send(port, host)).status).toBe(404);

    const pool = createPool({ url: p.dbUrl, max: 1, connectTimeoutMs: 5000 }, silentLogger());
    onTestFinished(() => pool.end());
    await pool.query('INSERT INTO hostnames (hostname, app_id) SELECT $1, id FROM apps WHERE name = $2', [host, APP]);
    const writtenAt = Date.now();
    await waitFor(async () => (await send(port, host)).status === 200, { name: 'the balancer routes the host', timeoutMs: 10_000, intervalMs: 20 });
    const repairedMs = Date.now() - writtenAt;
    expect(balancer.repairs).toBe(1);
    expect(p.nexus.nexus.routeIntegrity!.resyncs).toBe(1);
    await waitFor(async () => (await nodes()).find((n) => n.id === balancer.id)?.repairs === 1, { name: 'pier nodes shows the balancer repair', timeoutMs: 5000, intervalMs: 100 });
    // Once reloaded it matches: no further reloads.
    await sleep(INTERVAL_MS * 2);
    expect(balancer.repairs).toBe(1);
    await pool.query('DELETE FROM hostnames WHERE hostname = $1', [host]);
    console.log(`[integrity] balancer: stale table (host written without its event) routed after ${repairedMs} ms (interval ${INTERVAL_MS} ms)`);
    expect(repairedMs).toBeLessThanOrEqual(REPAIR_BUDGET_MS);
  }, 60_000);
});
