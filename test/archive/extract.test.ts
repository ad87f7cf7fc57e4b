import { lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { extractArchive } from '../../src/archive/index.js';
import { TYPE } from '../../src/archive/tar-format.js';
import { ConflictError, ValidationError } from '../../src/core/errors.js';
import { tarGz, zeroBomb, fileHeader, type FakeEntry } from './fixtures.js';

const root = mkdtempSync(join(tmpdir(), 'pier-extract-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let counter = 0;

/** A fresh parent folder, so "nothing written" can be checked by listing it. */
function parent(): string {
  const dir = join(root, `case-${++counter}`);
  mkdirSync(dir);
  return dir;
}

const APP: FakeEntry = { name: 'wsgi.py', data: 'application = None\n' };

describe('extractArchive', () => {
  it('unpacks files, folders, links and modes when the archive is valid', async () => {
    const dest = join(parent(), 'release');
    const summary = await extractArchive(
      tarGz([
        { name: './', type: TYPE.directory, mode: 0o777 },
        APP,
        { name: 'bin/run', data: '#!/bin/sh\necho hi\n', mode: 0o4775 },
        { name: 'secret.txt', data: 's', mode: 0o600 },
        { name: 'static/', type: TYPE.directory, mode: 0o700 },
        { name: 'static/app.css', data: 'body{}' },
        { name: 'static/latest.css', type: TYPE.symlink, linkname: 'app.css' },
        { name: 'copy.py', type: TYPE.hardlink, linkname: 'wsgi.py' },
      ]),
      dest,
    );
    expect(summary.totalBytes).toBe(19 + 18 + 1 + 6 + 19);
    expect(readFileSync(join(dest, 'wsgi.py'), 'utf8')).toBe('application = None\n');
    expect(statSync(join(dest, 'bin/run')).mode & 0o7777).toBe(0o755);
    expect(statSync(join(dest, 'secret.txt')).mode & 0o7777).toBe(0o644);
    expect(statSync(join(dest, 'static')).mode & 0o7777).toBe(0o755);
    expect(statSync(dest).mode & 0o7777).toBe(0o755);
    expect(readlinkSync(join(dest, 'static/latest.css'))).toBe('app.css');
    expect(readFileSync(join(dest, 'static/latest.css'), 'utf8')).toBe('body{}');
    const copy = lstatSync(join(dest, 'copy.py'));
    expect(copy.isFile() && copy.nlink === 1).toBe(true); // a copy, not a second link to the inode
    expect(readFileSync(join(dest, 'copy.py'), 'utf8')).toBe('application = None\n');
  });

  it.each<[string, FakeEntry[]]>([
    ['a traversal', [APP, { name: 'ok.txt', data: 'fine' }, { name: '../../evil', data: 'x' }]],
    ['an absolute path', [APP, { name: '/tmp/evil', data: 'x' }]],
    ['a symlink out', [APP, { name: 'etc', type: TYPE.symlink, linkname: '/etc' }]],
    ['a write through a symlink', [APP, { name: 'l', type: TYPE.symlink, linkname: 'd' }, { name: 'l/x', data: 'x' }]],
    ['a bad hard link', [APP, { name: 'h', type: TYPE.hardlink, linkname: '/etc/passwd' }]],
    ['a device', [APP, { name: 'sda', type: TYPE.blockDevice }]],
    ['a FIFO', [APP, { name: 'pipe', type: TYPE.fifo }]],
    ['a symlink escaping through another', [APP, { name: 's/l', type: TYPE.symlink, linkname: '..' }, { name: 'o', type: TYPE.symlink, linkname: 's/l/..' }]],
  ])('writes nothing when the archive has %s', async (_what, entries) => {
    const dir = parent();
    await expect(extractArchive(tarGz(entries), join(dir, 'release'))).rejects.toBeInstanceOf(ValidationError);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('writes nothing when a limit is hit after files were already written', async () => {
    const dir = parent();
    const entries = [APP, { name: 'a.bin', data: Buffer.alloc(3000) }, { name: 'b.bin', data: Buffer.alloc(3000) }];
    await expect(extractArchive(tarGz(entries), join(dir, 'release'), { maxBytes: 5000 })).rejects.toThrow(
      "archive entry 'b.bin' takes the unpacked size past the 4.9 KiB limit",
    );
    expect(readdirSync(dir)).toEqual([]);
  });

  it('writes nothing for a gzip bomb', async () => {
    const dir = parent();
    await expect(extractArchive(zeroBomb(1024, fileHeader('zeros.bin', 1024 ** 3)), join(dir, 'release'))).rejects.toThrow(
      "archive entry 'zeros.bin' is 1 GiB, over the 256 MiB limit per file",
    );
    expect(readdirSync(dir)).toEqual([]);
  });

  it('refuses to overwrite an existing folder unless asked to replace it', async () => {
    const dest = join(parent(), 'release');
    mkdirSync(dest);
    writeFileSync(join(dest, 'old.txt'), 'old');
    await expect(extractArchive(tarGz([APP]), dest)).rejects.toBeInstanceOf(ConflictError);
    await extractArchive(tarGz([APP]), dest, {}, { replace: true });
    expect(readdirSync(dest)).toEqual(['wsgi.py']);
    expect(readdirSync(join(dest, '..'))).toEqual(['release']);
  });
});
