/** The add-on registry as the framework reads it: a kind Pier knows but this platform does not drive is a 422. */
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/logger.js';
import type { AddonKindDriver } from '../../src/nexus/addons/kinds.js';
import { AddonService, addonName } from '../../src/nexus/addons/service.js';

const postgresql: AddonKindDriver = {
  kind: 'postgresql', configVar: 'DATABASE_URL',
  provision: () => Promise.reject(new Error('not used here')), remove: () => Promise.resolve('done'), details: () => ({}),
};

describe('AddonService.driverFor', () => {
  // driverFor reads the registry only: no query is made (a pool that throws on use proves it).
  const pool = new Proxy({}, { get: () => { throw new Error('no database here'); } }) as pg.Pool;
  const service = new AddonService({ pool, kinds: new Map([['postgresql', postgresql]]), log: silentLogger() });

  it('gives the driver of an offered kind', () => {
    expect(service.driverFor('postgresql')).toBe(postgresql);
  });

  it('answers a known kind this platform does not offer, and an unknown one, as PIER_UNSUPPORTED naming what is offered', () => {
    expect(() => service.driverFor('redis')).toThrow("add-on kind 'redis' is not available on this platform; available: postgresql");
    expect(() => service.driverFor('mysql')).toThrow("add-on kind 'mysql' is unknown; choose one of: postgresql");
    const thrown = (() => {
      try {
        service.driverFor('redis');
      } catch (err) {
        return err;
      }
      return undefined;
    })();
    expect(thrown).toMatchObject({ code: 'PIER_UNSUPPORTED' });
  });

  it('names add-ons Heroku-style', () => {
    const names = new Set(Array.from({ length: 50 }, () => addonName('postgresql')));
    for (const name of names) expect(name).toMatch(/^postgresql-[a-z]+-\d{5}$/);
    expect(names.size).toBeGreaterThan(40);
  });
});
