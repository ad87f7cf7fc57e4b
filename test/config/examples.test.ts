import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';

const dir = new URL('../../config/', import.meta.url).pathname;

describe('config examples', () => {
  const files = readdirSync(dir).filter((f) => f.endsWith('.example.toml'));

  it('has an example for each daemon and for pier up', () => {
    for (const name of ['nexus', 'runner', 'balancer', 'stats', 'pier']) expect(files).toContain(`${name}.example.toml`);
  });

  it.each(files)('%s loads without error and without a data folder set', (file) => {
    const config = loadConfig({ file: `${dir}${file}`, env: {} });
    expect(config.dataDir.length).toBeGreaterThan(0);
    expect(config.cluster.nexus.length).toBeGreaterThan(0);
  });
});
