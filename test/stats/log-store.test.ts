import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/core/errors.js';
import { silentLogger } from '../../src/core/logger.js';
import { LogStore, chunkName, type LogStoreOptions } from '../../src/stats/log-store.js';

let dir: string;
const stores: LogStore[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pier-log-store-'));
});

afterEach(async () => {
  while (stores.length > 0) await stores.pop()!.close();
  await rm(dir, { recursive: true, force: true });
});

async function openStore(options: Partial<LogStoreOptions> = {}): Promise<LogStore> {
  const store = new LogStore({ dir, chunkBytes: 1024 * 1024, retainChunks: 4, log: silentLogger(), ...options });
  await store.start();
  stores.push(store);
  return store;
}

/** `line-0001` … : 9 characters, 10 bytes with the newline. */
function numbered(from: number, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `line-${String(from + i).padStart(4, '0')}`);
}

async function chunkFiles(app: string): Promise<string[]> {
  return (await readdir(join(dir, app))).sort();
}

describe('LogStore', () => {
  it('appends lines in order to the first chunk of the app', async () => {
    const store = await openStore();
    store.append('web', ['one', 'two']);
    store.append('web', ['three']);
    store.append('api', ['other']);
    await store.flush();
    expect(await chunkFiles('web')).toEqual(['000001.log']);
    expect(await readFile(join(dir, 'web', '000001.log'), 'utf8')).toBe('one\ntwo\nthree\n');
    expect(await readFile(join(dir, 'api', '000001.log'), 'utf8')).toBe('other\n');
    expect(store.stats).toEqual({ written: 4, dropped: 0, writeErrors: 0 });
  });

  it('names chunks with six digits', () => {
    expect(chunkName(1)).toBe('000001.log');
    expect(chunkName(123456)).toBe('123456.log');
    expect(chunkName(1234567)).toBe('1234567.log');
  });

  it('starts a new chunk when the next line would pass chunkBytes', async () => {
    const store = await openStore({ chunkBytes: 100, retainChunks: 10 });
    store.append('web', numbered(1, 25));
    await store.flush();
    expect(await chunkFiles('web')).toEqual(['000001.log', '000002.log', '000003.log']);
    expect((await readFile(join(dir, 'web', '000001.log'), 'utf8')).split('\n').slice(0, -1)).toEqual(numbered(1, 10));
    expect((await readFile(join(dir, 'web', '000002.log'), 'utf8')).split('\n').slice(0, -1)).toEqual(numbered(11, 10));
    expect((await readFile(join(dir, 'web', '000003.log'), 'utf8')).split('\n').slice(0, -1)).toEqual(numbered(21, 5));
    for (const name of await chunkFiles('web')) expect((await stat(join(dir, 'web', name))).size).toBeLessThanOrEqual(100);
  });

  it('rotates the same way when lines arrive one write at a time', async () => {
    const store = await openStore({ chunkBytes: 100, retainChunks: 10 });
    for (const line of numbered(1, 25)) {
      store.append('web', [line]);
      await store.flush();
    }
    expect(await chunkFiles('web')).toEqual(['000001.log', '000002.log', '000003.log']);
    expect((await stat(join(dir, 'web', '000003.log'))).size).toBe(50);
  });

  it('writes a line longer than chunkBytes into a chunk of its own', async () => {
    const store = await openStore({ chunkBytes: 100, retainChunks: 10 });
    store.append('web', ['short', 'x'.repeat(250), 'after']);
    await store.flush();
    expect(await chunkFiles('web')).toEqual(['000001.log', '000002.log', '000003.log']);
    expect(await readFile(join(dir, 'web', '000002.log'), 'utf8')).toBe(`${'x'.repeat(250)}\n`);
    expect((await store.tail('web', 10)).lines).toEqual(['short', 'x'.repeat(250), 'after']);
  });

  it('keeps only the newest retainChunks chunks', async () => {
    const store = await openStore({ chunkBytes: 100, retainChunks: 2 });
    store.append('web', numbered(1, 45));
    await store.flush();
    expect(await chunkFiles('web')).toEqual(['000004.log', '000005.log']);
    const { lines, truncated } = await store.tail('web', 1000);
    expect(lines).toEqual(numbered(31, 15));
    expect(truncated).toBe(false);
  });

  it('tails the last n lines, oldest first, across chunks', async () => {
    const store = await openStore({ chunkBytes: 100, retainChunks: 10 });
    store.append('web', numbered(1, 25));
    await store.flush();
    expect(await store.tail('web', 3)).toEqual({ lines: numbered(23, 3), truncated: false });
    expect(await store.tail('web', 12)).toEqual({ lines: numbered(14, 12), truncated: false });
    expect(await store.tail('web', 1)).toEqual({ lines: ['line-0025'], truncated: false });
  });

  it('stops at maxBytes and says so', async () => {
    const store = await openStore();
    store.append('web', numbered(1, 10));
    // Each line counts its 9 bytes plus 8 of overhead: 50 bytes hold two lines.
    expect(await store.tail('web', 10, 50)).toEqual({ lines: numbered(9, 2), truncated: true });
    expect(await store.tail('web', 2, 50)).toEqual({ lines: numbered(9, 2), truncated: false });
    expect(await store.tail('web', 10, 10_000)).toEqual({ lines: numbered(1, 10), truncated: false });
  });

  it('returns no lines for an app that never logged', async () => {
    const store = await openStore();
    expect(await store.tail('quiet', 10)).toEqual({ lines: [], truncated: false });
  });

  it('sees lines appended just before tail without a flush', async () => {
    const store = await openStore();
    store.append('web', ['a', 'b']);
    const tail = store.tail('web', 10);
    store.append('web', ['c']);
    expect((await tail).lines.slice(0, 2)).toEqual(['a', 'b']);
    expect((await store.tail('web', 10)).lines).toEqual(['a', 'b', 'c']);
  });

  it('reads multi-byte UTF-8 back intact when 64 KiB read blocks split characters', async () => {
    const store = await openStore();
    const glyphs = ['é', '€', '😀', 'a', 'ß', '漢'];
    const lines = Array.from({ length: 3000 }, (_, i) => `${i}:${Array.from({ length: i % 97 }, (_, j) => glyphs[(i + j) % glyphs.length]).join('')}`);
    lines.push(`${'€'.repeat(50_000)}x`, `${'😀'.repeat(20_000)}`, 'last é');
    store.append('web', lines);
    await store.flush();
    const file = await readFile(join(dir, 'web', '000001.log'));
    // Guard: the data really puts block boundaries inside characters (a continuation byte 10xxxxxx).
    const midCharacter = [];
    for (let pos = file.length - 65_536; pos > 0; pos -= 65_536) if ((file[pos]! & 0xc0) === 0x80) midCharacter.push(pos);
    expect(midCharacter.length).toBeGreaterThan(1);
    const { lines: back } = await store.tail('web', 10_000);
    expect(back).toEqual(lines);
  });

  it('reads multi-byte UTF-8 back intact across chunk files', async () => {
    const store = await openStore({ chunkBytes: 70_000, retainChunks: 20 });
    const lines = Array.from({ length: 400 }, (_, i) => `${i} ${'€😀é'.repeat(40 + (i % 13))}`);
    store.append('web', lines);
    await store.flush();
    expect((await chunkFiles('web')).length).toBeGreaterThan(2);
    expect((await store.tail('web', 10_000)).lines).toEqual(lines);
    expect((await store.tail('web', 7)).lines).toEqual(lines.slice(-7));
  });

  it('calls onWritten with every batch in order', async () => {
    const seen: Array<[string, string[]]> = [];
    const store = await openStore({ chunkBytes: 100, retainChunks: 10, onWritten: (app, lines) => seen.push([app, [...lines]]) });
    const all = numbered(1, 40);
    store.append('web', all.slice(0, 3));
    store.append('web', all.slice(3, 5));
    await new Promise((resolve) => setImmediate(resolve));
    store.append('web', all.slice(5, 22));
    await store.flush();
    store.append('web', all.slice(22));
    store.append('api', ['x']);
    await store.flush();
    expect(seen.filter(([app]) => app === 'web').flatMap(([, lines]) => lines)).toEqual(all);
    expect(seen.filter(([app]) => app === 'api')).toEqual([['api', ['x']]]);
    // Lines of one tick share a batch.
    expect(seen[0]).toEqual(['web', all.slice(0, 5)]);
  });

  it('drops lines beyond maxPendingBytes and counts them', async () => {
    const store = await openStore({ maxPendingBytes: 100 });
    store.append('web', numbered(1, 20));
    await store.flush();
    // 10 bytes a line: the queue holds 100 bytes, or one line more (the limit is checked before each line).
    const { written, dropped } = store.stats;
    expect(written).toBeGreaterThanOrEqual(10);
    expect(written).toBeLessThanOrEqual(11);
    expect(dropped).toBe(20 - written);
    expect((await store.tail('web', 100)).lines).toEqual(numbered(1, written));
    // The queue is empty again once written: new lines are accepted.
    store.append('web', ['later']);
    await store.flush();
    expect((await store.tail('web', 1)).lines).toEqual(['later']);
    expect(store.stats.dropped).toBe(dropped);
  });

  it.each(['../etc', 'Web', '', '1web', 'a'.repeat(31), 'web/x', 'web\n'])('rejects the app name %j', async (app) => {
    const store = await openStore();
    expect(() => store.append(app, ['x'])).toThrow(ValidationError);
    await expect(store.tail(app, 1)).rejects.toBeInstanceOf(ValidationError);
    expect(await readdir(dir)).toEqual([]);
  });

  it('continues the numbering and the tail after a restart on the same folder', async () => {
    const first = await openStore({ chunkBytes: 100, retainChunks: 3 });
    first.append('web', numbered(1, 25));
    await first.close();

    const second = await openStore({ chunkBytes: 100, retainChunks: 3 });
    expect((await second.tail('web', 1000)).lines).toEqual(numbered(1, 25));
    second.append('web', numbered(26, 10));
    await second.flush();
    // Chunk 3 held 5 lines: it is filled up to 100 bytes, then 000004.log begins and 000001.log goes.
    expect(await chunkFiles('web')).toEqual(['000002.log', '000003.log', '000004.log']);
    expect((await readFile(join(dir, 'web', '000003.log'), 'utf8')).split('\n').slice(0, -1)).toEqual(numbered(21, 10));
    expect((await second.tail('web', 1000)).lines).toEqual(numbered(11, 25));
  });

  it('writes everything queued on close', async () => {
    const store = await openStore();
    store.append('web', numbered(1, 5));
    await store.close();
    expect(await readFile(join(dir, 'web', '000001.log'), 'utf8')).toBe(`${numbered(1, 5).join('\n')}\n`);
    expect(store.stats.written).toBe(5);
  });

  it('counts a failed write as dropped lines and keeps accepting', async () => {
    const store = await openStore();
    // A file where the app's folder should be: the write fails.
    await writeFile(join(dir, 'web'), 'not a folder');
    store.append('web', ['lost']);
    await store.flush();
    expect(store.stats).toMatchObject({ written: 0, dropped: 1, writeErrors: 1 });
    store.append('api', ['kept']);
    await store.flush();
    expect((await store.tail('api', 5)).lines).toEqual(['kept']);
  });
});
