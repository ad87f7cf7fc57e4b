import { describe, expect, it } from 'vitest';
import { testDatabase } from '../helpers/postgres.js';
import { controlClient, startNexus } from '../helpers/daemons.js';

const dbUrl = await testDatabase();

describe('nexus', () => {
  it('answers ping over the control socket when started', async () => {
    const n = await startNexus(dbUrl);
    const client = controlClient([n.control]);
    const pong = await client.call('ping', {});
    expect(pong.nexusId).toBe(n.nexus.id);
    expect(pong.version).toBeGreaterThanOrEqual(0);
  });
});
