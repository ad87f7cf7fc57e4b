/**
 * The platform of `platform.ts` as the tenant-boundary tests of builds and logs use it: apps made by name for the
 * test's owner (their `p-<app>` users removed after the file), a `record/` folder every user may write (sticky),
 * where an attacker app notes what it did, and readers for an app's instance and its logs.
 */
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import type { Release } from '../../src/protocol/index.js';
import type { Runner } from '../../src/runner/runner.js';
import type { ApiCall } from './api.js';
import { platformForFile } from './platform.js';

export interface RootPlatform {
  /** The data folder (searchable by app users); `record/` in it is writable by every user (sticky). */
  dir: string;
  record: string;
  api: ApiCall;
  readonly runner: Runner;
  /** Creates app `<prefix><id>-<suffix>` for the test's owner; its user is removed after the file. */
  createApp(suffix: string): Promise<string>;
  /** Writes an app folder from `files` (paths may have folders). */
  writeApp(name: string, files: Record<string, string>): string;
  /** Uploads `appDir` as a new release of `app` and waits until it is live or failed. */
  deploy(app: string, appDir: string): Promise<Release>;
  /** GETs `path` of the app's ready instance directly. */
  get(app: string, path?: string): Promise<string>;
  logsOf(app: string): Promise<string[]>;
}

/** Call at the top level of a test file. `pipArgs` go to the runner's config. */
export async function rootPlatform(prefix: string, pipArgs: string[] = []): Promise<RootPlatform> {
  const apps: string[] = [];
  const p = platformForFile({ prefix, apps, runner: { startTimeoutMs: 6000, pipArgs } });
  const record = join(p.dir, 'record');
  mkdirSync(record, { mode: 0o1777 });
  chmodSync(record, 0o1777);
  const names = `${prefix}${randomId()}`;
  const api: ApiCall = (...args) => p.api(...args);
  return {
    dir: p.dir, record, api,
    get runner() {
      return p.runner;
    },
    async createApp(suffix) {
      const name = `${names}-${suffix}`;
      expect((await api('POST', '/v1/apps', { name })).status).toBe(201);
      apps.push(name);
      return name;
    },
    writeApp: (name, files) => p.writeApp(name, files),
    deploy: (app, appDir) => p.deploy(app, appDir),
    async get(app, path = '/') {
      const port = (await p.readyInstances(app))[0]!.port!;
      const res = await fetch(`http://127.0.0.1:${port}${path}`);
      expect(res.status).toBe(200);
      return res.text();
    },
    async logsOf(app) {
      return (await api<{ lines: string[] }>('GET', `/v1/apps/${app}/logs?lines=10000`)).json.lines;
    },
  };
}
