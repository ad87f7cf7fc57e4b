/**
 * `pier addons*`: argument errors caught before anything is sent, and the commands end to end (the built CLI as a
 * real process) against a nexus on the test PostgreSQL.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { checkAddonName, checkDestroyConfirm, parseAddonKind } from '../../src/cli/commands/addons.js';
import { randomId } from '../../src/core/ids.js';
import { createOwner, withTransaction } from '../../src/db/index.js';
import type { AddonView } from '../../src/protocol/index.js';
import { runCli } from '../helpers/cli.js';
import { startNexus, type NexusHandle } from '../helpers/daemons.js';
import { dropAddonLeftovers, testDatabase, testPool } from '../helpers/postgres.js';

describe('addons arguments', () => {
  it('takes the kinds Pier knows (and their Heroku names), refusing others with the list', () => {
    expect(parseAddonKind('postgresql')).toBe('postgresql');
    expect(parseAddonKind('heroku-postgresql:mini')).toBe('postgresql');
    expect(parseAddonKind('Postgres')).toBe('postgresql');
    expect(parseAddonKind('redis')).toBe('redis');
    expect(() => parseAddonKind('mysql')).toThrow("unknown add-on kind 'mysql'; choose one of: postgresql, redis (e.g. 'pier addons:create postgresql -a APP')");
    expect(() => parseAddonKind('')).toThrow(/unknown add-on kind ''/);
  });

  it('checks add-on names and the destroy confirmation', () => {
    expect(checkAddonName('postgresql-amber-48213')).toBe('postgresql-amber-48213');
    expect(() => checkAddonName('../etc')).toThrow(/add-on name '\.\.\/etc' must be lowercase letters, digits and dashes/);
    expect(() => checkAddonName('Postgresql-X')).toThrow(/must be lowercase/);
    expect(() => checkDestroyConfirm('blog', 'postgresql-amber-48213', undefined)).toThrow(
      "this destroys add-on 'postgresql-amber-48213' of app 'blog' and all its data; to proceed, repeat with --confirm blog",
    );
    expect(() => checkDestroyConfirm('blog', 'postgresql-amber-48213', 'blag')).toThrow(/repeat with --confirm blog/);
    expect(() => checkDestroyConfirm('blog', 'postgresql-amber-48213', 'blog')).not.toThrow();
  });
});

const dbUrl = await testDatabase();
const pool = testPool(dbUrl);

describe('pier addons', () => {
  const app = `ad-cli-${randomId(3)}`;
  let n: NexusHandle;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    n = await startNexus(dbUrl, {}, 'file');
    const owner = await withTransaction(pool, (tx) => createOwner(tx, `ad-cli-${randomId()}`));
    env = { PIER_API_URL: n.api, PIER_TOKEN: owner.token, XDG_CONFIG_HOME: '/nonexistent', PIER_DATA: '/nonexistent' };
  });

  // A failed test may leave the app's database: drop it and its role from the shared server.
  afterAll(() => dropAddonLeftovers(inject('pgAdminUrl'), [app]));

  it('creates, lists, shows and destroys an add-on; refuses bad arguments in one line before sending', async () => {
    expect((await runCli(['apps:create', app], env)).code).toBe(0);
    // Argument errors: one line on stderr, nothing created.
    for (const [args, message] of [
      [['addons:create', '-a', app], /missing required argument 'kind'/],
      [['addons:create', 'mysql', '-a', app], /unknown add-on kind 'mysql'; choose one of: postgresql, redis/],
      [['addons:create', 'postgresql'], /no app given; use -a APP or set PIER_APP/],
      [['addons:info', '-a', app], /missing required argument 'name'/],
    ] as const) {
      const refused = await runCli([...args], env);
      expect(refused.code, args.join(' ')).not.toBe(0);
      expect(refused.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(refused.stderr).toMatch(message);
    }
    expect((await runCli(['addons', '-a', app], env)).stdout).toContain(`no add-ons on ${app}`);

    const created = await runCli(['addons:create', 'postgresql', '-a', app], env);
    expect(created.code, created.stderr).toBe(0);
    const name = /created (postgresql-[a-z]+-\d+) for /.exec(created.stdout)?.[1];
    expect(created.stdout).toMatch(/DATABASE_URL is set/);
    expect(name).toBeDefined();
    const listed = JSON.parse((await runCli(['addons', '-a', app, '--json'], env)).stdout) as AddonView[];
    expect(listed.map((a) => [a.name, a.kind, a.state, a.configVar])).toEqual([[name, 'postgresql', 'ready', 'DATABASE_URL']]);
    const info = await runCli(['addons:info', name!, '-a', app], env);
    expect(info.stdout).toMatch(/config var: +DATABASE_URL/);
    expect(info.stdout).toMatch(/database: +addon_ad_cli_/);
    expect(info.stdout).toMatch(/connection limit: +20/);
    const url = (JSON.parse((await runCli(['config', '-a', app, '--json'], env)).stdout) as Record<string, string>).DATABASE_URL!;
    expect(info.stdout).not.toContain(new URL(url).password);
    expect((await runCli(['apps:info', '-a', app], env)).stdout).toMatch(new RegExp(`add-ons: +${name} \\(DATABASE_URL\\)`));
    const duplicate = await runCli(['addons:create', 'postgresql', '-a', app], env);
    expect(duplicate.code).toBe(65);
    expect(duplicate.stderr).toMatch(/already has a postgresql add-on/);

    // Destroy wants --confirm APP; without it, or with another name, nothing is destroyed.
    for (const args of [['addons:destroy', name!, '-a', app], ['addons:destroy', name!, '-a', app, '--confirm', 'other']]) {
      const refused = await runCli(args, env);
      expect(refused.code).toBe(64);
      expect(refused.stderr).toMatch(new RegExp(`this destroys add-on '${name}' of app '${app}' and all its data; to proceed, repeat with --confirm ${app}`));
    }
    expect((await pool.query('SELECT 1 FROM addons WHERE name = $1', [name])).rows).toHaveLength(1);
    const destroyed = await runCli(['addons:destroy', name!, '-a', app, '--confirm', app], env);
    expect(destroyed.code, destroyed.stderr).toBe(0);
    expect(destroyed.stdout).toMatch(`destroyed ${name} of ${app}; DATABASE_URL is unset`);
    expect((await pool.query('SELECT 1 FROM addons WHERE name = $1', [name])).rows).toHaveLength(0);
    expect((await pool.query('SELECT 1 FROM pg_database WHERE starts_with(datname, $1)', [`addon_${app.replace(/-/g, '_')}_`])).rows).toHaveLength(0);
    const gone = await runCli(['addons:info', name!, '-a', app], env);
    expect(gone.code).toBe(66);
    expect(gone.stderr).toMatch(`add-on '${name}' is not attached to app '${app}'`);
  });
});
