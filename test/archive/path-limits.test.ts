/**
 * Attack 5 of issue #10: a 2 KiB tarball with one very deep path cost O(depth²) (8 s and 1.1 GB per entry) in the
 * check, and as much again in the runner's unpacker. Paths now have a length and a depth limit, implied folders
 * count as entries, and every check is linear: these tests play the attacker against the real reader and unpacker.
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_ARCHIVE_LIMITS, extractArchive, inspectArchive, type ArchiveLimits } from '../../src/archive/index.js';
import { TYPE } from '../../src/archive/tar-format.js';
import { ValidationError } from '../../src/core/errors.js';
import { tarGz, type FakeEntry } from './fixtures.js';

const APP: FakeEntry = { name: 'wsgi.py', data: 'application = None\n' };
/** The attack: 'a/' × 20000, a 40 KB name that packs to a few hundred bytes. */
const DEEP = `${'a/'.repeat(20_000)}x.py`;
const FIX = 'shorten it, or leave it out with .pierignore';

const root = mkdtempSync(join(tmpdir(), 'pier-ar-limits-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let counter = 0;

async function rejection(bytes: Uint8Array, limits: Partial<ArchiveLimits> = {}): Promise<{ err: ValidationError; ms: number }> {
  const started = performance.now();
  const err = await inspectArchive(bytes, limits).then(() => undefined, (e: unknown) => e);
  const ms = performance.now() - started;
  expect(err).toBeInstanceOf(ValidationError);
  expect((err as Error).message).not.toContain('\n');
  return { err: err as ValidationError, ms };
}

describe('archive path limits', () => {
  it('has defaults far above what real Django and Flask apps need', () => {
    expect(DEFAULT_ARCHIVE_LIMITS.maxPathBytes).toBe(1024);
    expect(DEFAULT_ARCHIVE_LIMITS.maxPathDepth).toBe(64);
    expect(DEFAULT_ARCHIVE_LIMITS.maxEntries).toBe(50_000);
  });

  it('refuses a 40 KB pax path at its pax header, naming the limit, in milliseconds', async () => {
    const bytes = tarGz([APP, { name: DEEP, data: 'x' }]);
    expect(bytes.length).toBeLessThan(2048);
    const { err, ms } = await rejection(bytes);
    expect(err.message).toBe(`archive entry '${'a/'.repeat(100)}…' is 40004 bytes long, over the 1024-byte limit for a path; ${FIX}`);
    expect(String(err.details?.entry).length).toBeLessThanOrEqual(1025);
    console.log(`pax path of 'a/' x 20000: rejected in ${ms.toFixed(1)} ms (was ~8 s)`);
    expect(ms).toBeLessThan(1000);
  });

  it('refuses a 40 KB GNU long name at its header, without reading it', async () => {
    const { err, ms } = await rejection(tarGz([APP, { name: DEEP, data: 'x', gnu: true }]));
    expect(err.message).toBe(`archive has a GNU long name of 39.1 KiB, over the 1024-byte limit for a path; ${FIX}`);
    expect(ms).toBeLessThan(1000);
  });

  it('refuses a GNU long name over the limit but under PATH_MAX, naming the entry', async () => {
    const name = `${'b/'.repeat(1000)}x.py`;
    const { err } = await rejection(tarGz([APP, { name, data: 'x', gnu: true }]));
    expect(err.message).toBe(`archive entry '${'b/'.repeat(100)}…' is 2004 bytes long, over the 1024-byte limit for a path; ${FIX}`);
  });

  it('refuses over-long link targets, from pax and from GNU long links', async () => {
    const target = `${'c/'.repeat(700)}wsgi.py`;
    for (const gnu of [false, true]) {
      const { err } = await rejection(tarGz([APP, { name: 'link', type: TYPE.symlink, linkname: target, gnu }]));
      expect(err.message, gnu ? 'gnu' : 'pax').toBe(`archive entry 'link' has a link target of 1407 bytes, over the 1024-byte limit for a path; ${FIX}`);
    }
  });

  it('counts the limit in UTF-8 bytes, not characters', async () => {
    const name = `${'é'.repeat(600)}.py`; // 600 characters, 1203 bytes
    const { err } = await rejection(tarGz([APP, { name, data: 'x' }]));
    expect(err.message).toMatch(/ is 1203 bytes long, over the 1024-byte limit for a path; /);
  });

  it('refuses a path deeper than the depth limit, and accepts one at it', async () => {
    const tooDeep = `${'d/'.repeat(100)}x.py`;
    expect((await rejection(tarGz([APP, { name: tooDeep, data: 'x' }]))).err.message).toBe(
      `archive entry '${tooDeep.slice(0, 200)}…' is 101 levels deep, over the 64-level limit for a path; ${FIX}`,
    );
    const atLimit = `${'d/'.repeat(63)}x.py`;
    const summary = await inspectArchive(tarGz([APP, { name: atLimit, data: 'x' }]));
    expect(summary.entries.map((e) => e.path)).toContain(atLimit);
  });

  it('accepts a path of exactly the byte limit', async () => {
    const name = `${'e'.repeat(200)}/${'f'.repeat(200)}/${'g'.repeat(200)}/${'h'.repeat(200)}/${'i'.repeat(220)}`;
    expect(Buffer.byteLength(name)).toBe(1024);
    expect((await inspectArchive(tarGz([APP, { name, data: 'x' }]))).entries).toHaveLength(2);
    const { err } = await rejection(tarGz([APP, { name: `${name}j`, data: 'x' }]));
    expect(err.message).toMatch(/ is 1025 bytes long, over the 1024-byte limit for a path; /);
  });

  it('refuses a file or folder name longer than Linux allows (255 bytes)', async () => {
    const { err } = await rejection(tarGz([APP, { name: `dir/${'n'.repeat(256)}`, data: 'x' }]));
    expect(err.message).toMatch(/^archive entry 'dir\/n+…?' has a name of 256 bytes in its path, over the 255-byte limit of Linux for one file or folder name$/);
  });

  it('counts the folders a path implies against the entry limit', async () => {
    const { err } = await rejection(tarGz([APP, { name: 'a/b/c/d/e/f/g/h/i/j/k.py', data: 'x' }]), { maxEntries: 10 });
    expect(err.message).toBe("archive entry 'a/b/c/d/e/f/g/h/i/j/k.py' is over the limit of 10 entries, counting the folders its path implies");
    // 800 entries × 64 levels would be 51,200 folders for the runner to create: over the default 50,000.
    const fan = Array.from({ length: 800 }, (_, i): FakeEntry => ({ name: `${`t${i}/`.repeat(63)}x`, data: '' }));
    const { err: fanErr, ms } = await rejection(tarGz([APP, ...fan]));
    expect(fanErr.message).toMatch(/ is over the limit of 50000 entries, counting the folders its path implies$/);
    expect(ms).toBeLessThan(3000);
  });

  it('refuses more entries than the limit', async () => {
    const files = Array.from({ length: 21 }, (_, i) => ({ name: `f${i}`, data: 'x' }));
    expect((await rejection(tarGz([APP, ...files]), { maxEntries: 20 })).err.message).toBe("archive entry 'f19' is over the limit of 20 entries");
  });

  it('refuses a chain of more than 40 symlinks, whatever order the links come in', async () => {
    const chain = (n: number): FakeEntry[] =>
      Array.from({ length: n }, (_, i) => ({ name: `l${i}`, type: TYPE.symlink, linkname: i === n - 1 ? 'wsgi.py' : `l${i + 1}` }));
    expect((await inspectArchive(tarGz([APP, ...chain(40)]))).entries).toHaveLength(41);
    expect((await inspectArchive(tarGz([APP, ...chain(40).reverse()]))).entries).toHaveLength(41);
    for (const links of [chain(41), chain(41).reverse()]) {
      const { err } = await rejection(tarGz([APP, ...links]));
      expect(err.message).toMatch(/^archive entry 'l\d+' is a chain of more than 40 symlinks, more than Linux follows \(or a loop\)$/);
    }
  });

  it('resolves thousands of symlinks through long link chains in linear time', async () => {
    // A 39-link chain of 1 KB targets ('s/../' × 200 …), and 10,000 links through its head (40 links each, the
    // most Linux follows): the old resolver re-walked the chain, re-joining the path at every component, for each.
    const hop = 's/../'.repeat(200);
    const chain = Array.from({ length: 38 }, (_, i): FakeEntry => ({ name: `c${i}`, type: TYPE.symlink, linkname: `${hop}c${i + 1}` }));
    chain.push({ name: 'c38', type: TYPE.symlink, linkname: 's' });
    const fans = Array.from({ length: 10_000 }, (_, i): FakeEntry => ({ name: `s/f${i}`, type: TYPE.symlink, linkname: '../c0' }));
    const folder: FakeEntry = { name: 's/', type: TYPE.directory };
    const started = performance.now();
    const summary = await inspectArchive(tarGz([APP, folder, ...chain, ...fans]));
    const ms = performance.now() - started;
    console.log(`10,000 symlinks through a 39-link chain of 1 KB targets: checked in ${ms.toFixed(0)} ms`);
    expect(summary.entries).toHaveLength(2 + 39 + 10_000);
    expect(ms).toBeLessThan(3000);
    // One more hop through the fan makes the path 41 links long.
    const { err } = await rejection(tarGz([APP, folder, ...chain, { name: 'x', type: TYPE.symlink, linkname: 's/f0' }, ...fans.slice(0, 1)]));
    expect(err.message).toBe("archive entry 'x' is a chain of more than 40 symlinks, more than Linux follows (or a loop)");
  });

  it('still finds a symlink loop and an escape through another symlink', async () => {
    const loop = await rejection(tarGz([APP, { name: 'a', type: TYPE.symlink, linkname: 'b' }, { name: 'b', type: TYPE.symlink, linkname: 'a/x' }]));
    expect(loop.err.message).toMatch(/^archive entry '[ab]' is a symlink loop$/);
    const escape = await rejection(tarGz([APP, { name: 'd/up', type: TYPE.symlink, linkname: '../..' }]));
    expect(escape.err.message).toBe("archive entry 'd/up' is a symlink to '../..', outside the app folder");
    // Lexically 'p/q/x/../../..' is the root, but p/q is '../m' (a name the app may create later), one level up.
    const via = await rejection(tarGz([APP, { name: 'p/q', type: TYPE.symlink, linkname: '../m' }, { name: 'o', type: TYPE.symlink, linkname: 'p/q/x/../../..' }]));
    expect(via.err.message).toBe("archive entry 'o' is a symlink to 'p/q/x/../../..', outside the app folder");
  });

  it('does work linear in the archive even with the limits at their maximum', async () => {
    // 1,000 files 2,040 levels deep under one trunk: 2 M component look-ups now; the old check re-joined every
    // prefix of every path (~4 G characters copied, minutes of CPU and gigabytes of strings).
    const limits = { maxPathBytes: 4096, maxPathDepth: 4096 };
    const trunk = 'a/'.repeat(2040);
    const files = Array.from({ length: 1000 }, (_, i): FakeEntry => ({ name: `${trunk}f${i}`, data: '' }));
    const bytes = tarGz([APP, ...files]);
    const started = performance.now();
    const summary = await inspectArchive(bytes, limits);
    const ms = performance.now() - started;
    console.log(`1,000 files 2,040 levels deep (${bytes.length} bytes packed): checked in ${ms.toFixed(0)} ms`);
    expect(summary.entries).toHaveLength(1001);
    expect(ms).toBeLessThan(5000);
  });

  it('caps the pax and long-name headers of a whole archive, so names cannot inflate into gigabytes', async () => {
    // 1,100 entries with a 60 KiB pax comment each: 66 MiB of headers that compress to almost nothing.
    const padded = Array.from({ length: 1100 }, (_, i): FakeEntry => ({ name: `f${i}`, data: '', pax: { comment: 'c'.repeat(60 * 1024) } }));
    const { err, ms } = await rejection(tarGz([APP, ...padded]));
    expect(err.message).toBe('archive has more than 64 MiB of pax and long-name headers, far more than names need');
    expect(ms).toBeLessThan(3000);
  });

  it('refuses a maxPathBytes over PATH_MAX', async () => {
    await expect(inspectArchive(tarGz([APP]), { maxPathBytes: 5000 })).rejects.toThrow("archive limit maxPathBytes must be at most 4096 (Linux's PATH_MAX)");
  });
});

describe('extractArchive under the path limits', () => {
  function parent(): string {
    const dir = join(root, `case-${++counter}`);
    mkdirSync(dir);
    return dir;
  }

  it.each<[string, FakeEntry[]]>([
    ['a 40 KB pax path', [APP, { name: DEEP, data: 'x' }]],
    ['a 40 KB GNU long name', [APP, { name: DEEP, data: 'x', gnu: true }]],
    ['four 40 KB paths', [APP, ...[1, 2, 3, 4].map((i) => ({ name: `${'a/'.repeat(20_000)}${i}.py`, data: 'x' }))]],
    ['a 101-level path after valid files', [APP, { name: 'ok/fine.py', data: 'x' }, { name: `${'d/'.repeat(100)}x.py`, data: 'x' }]],
  ])('rejects %s in linear time and writes nothing', async (_what, entries) => {
    const dir = parent();
    const started = performance.now();
    const err = await extractArchive(tarGz(entries), join(dir, 'release')).then(() => undefined, (e: unknown) => e);
    const ms = performance.now() - started;
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as Error).message).toMatch(/over the (1024-byte|64-level) limit for a path/);
    expect(ms).toBeLessThan(1000);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('unpacks a tree at the depth limit, every folder 0755, one mkdir per folder', async () => {
    const dest = join(parent(), 'release');
    const deep = `${'d/'.repeat(63)}x.py`;
    const summary = await extractArchive(tarGz([APP, { name: deep, data: 'deep' }, { name: `${'d/'.repeat(30)}y.py`, data: 'y' }, { name: 'd/d/', type: TYPE.directory }]), dest);
    expect(summary.entries).toHaveLength(4);
    expect(statSync(join(dest, deep)).size).toBe(4);
    let dir = dest;
    for (let i = 0; i < 63; i++) {
      dir = join(dir, 'd');
      expect(statSync(dir).mode & 0o7777).toBe(0o755);
    }
  });
});
