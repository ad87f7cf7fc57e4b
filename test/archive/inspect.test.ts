import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { inspectArchive, type ArchiveLimits } from '../../src/archive/index.js';
import { TYPE } from '../../src/archive/tar-format.js';
import { ValidationError } from '../../src/core/errors.js';
import { fileHeader, pythonTarGz, rawTar, tarGz, zeroBomb } from './fixtures.js';

const APP = { name: 'wsgi.py', data: 'application = None\n' };

async function rejection(bytes: Uint8Array, limits: Partial<ArchiveLimits> = {}): Promise<ValidationError> {
  const err = await inspectArchive(bytes, limits).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ValidationError);
  expect((err as Error).message).not.toContain('\n');
  return err as ValidationError;
}

describe('inspectArchive', () => {
  it('lists files, folders and links with normalized names when the archive is valid', async () => {
    const summary = await inspectArchive(
      tarGz([
        { name: './', type: TYPE.directory },
        { name: './app/', type: TYPE.directory },
        { name: './app/wsgi.py', data: 'x = 1\n' },
        { name: 'run.sh', data: '#!/bin/sh\n', mode: 0o4755 },
        { name: 'app/current', type: TYPE.symlink, linkname: 'wsgi.py' },
        { name: 'copy.py', type: TYPE.hardlink, linkname: './app/wsgi.py' },
      ]),
    );
    expect(summary.entries).toEqual([
      { path: 'app', type: 'directory', size: 0, isExecutable: false },
      { path: 'app/wsgi.py', type: 'file', size: 6, isExecutable: false },
      { path: 'run.sh', type: 'file', size: 10, isExecutable: true },
      { path: 'app/current', type: 'symlink', size: 0, isExecutable: false, linkTarget: 'wsgi.py' },
      { path: 'copy.py', type: 'hardlink', size: 6, isExecutable: false, linkTarget: 'app/wsgi.py' },
    ]);
    expect(summary.totalBytes).toBe(22);
  });

  it('reads long names from ustar prefixes, GNU long-name headers and pax headers alike', async () => {
    const long = `${'deep/'.repeat(30)}wsgi.py`;
    const unicode = 'templates/café-ünïcode.html';
    for (const format of ['USTAR', 'GNU', 'PAX'] as const) {
      const members = format === 'USTAR' ? { [long]: 'a' } : { [long]: 'a', [`${'x'.repeat(180)}.py`]: 'b', [unicode]: 'c' };
      const summary = await inspectArchive(pythonTarGz(format, members));
      expect(summary.entries.map((e) => e.path).sort(), format).toEqual(Object.keys(members).sort());
    }
  });

  it('accepts symlinks that climb back into the tree', async () => {
    const summary = await inspectArchive(
      tarGz([APP, { name: 'a/b/link', type: TYPE.symlink, linkname: '../../wsgi.py' }, { name: 'a/up', type: TYPE.symlink, linkname: '..' }]),
    );
    expect(summary.entries).toHaveLength(3);
  });

  it.each([
    ['../../etc/passwd', "archive entry '../../etc/passwd' escapes the app folder"],
    ['app/../../x', "archive entry 'app/../../x' escapes the app folder"],
    ['app/../ok', "archive entry 'app/../ok' escapes the app folder"],
    ['/etc/passwd', "archive entry '/etc/passwd' has an absolute path"],
    ['bad\nname', "archive entry 'bad\\x0aname' has a control character in its name"],
  ])('rejects the entry name %j', async (name, message) => {
    const err = await rejection(tarGz([APP, { name, data: 'x' }]));
    expect(err.message).toBe(message);
    expect(err.details).toEqual({ entry: name });
  });

  it('rejects symlinks that point out of the tree', async () => {
    expect((await rejection(tarGz([APP, { name: 'etc', type: TYPE.symlink, linkname: '/etc' }]))).message).toBe(
      "archive entry 'etc' is a symlink to '/etc', outside the app folder",
    );
    expect((await rejection(tarGz([APP, { name: 'a/up', type: TYPE.symlink, linkname: '../../..' }]))).message).toBe(
      "archive entry 'a/up' is a symlink to '../../..', outside the app folder",
    );
  });

  it('rejects a symlink that escapes only by going through another symlink', async () => {
    // Lexically 'sub/l/..' is 'sub', but on disk sub/l is the root, so sub/l/.. is the root's parent.
    const err = await rejection(
      tarGz([APP, { name: 'sub/l', type: TYPE.symlink, linkname: '..' }, { name: 'out', type: TYPE.symlink, linkname: 'sub/l/..' }]),
    );
    expect(err.message).toBe("archive entry 'out' is a symlink to 'sub/l/..', outside the app folder");
  });

  it('rejects entries placed inside a symlink, which would write through it', async () => {
    const err = await rejection(tarGz([APP, { name: 'etc', type: TYPE.symlink, linkname: 'conf' }, { name: 'etc/passwd', data: 'x' }]));
    expect(err.message).toBe("archive entry 'etc/passwd' is inside 'etc', which is a symlink, not a folder");
  });

  it('rejects a symlink loop', async () => {
    const err = await rejection(tarGz([APP, { name: 'a', type: TYPE.symlink, linkname: 'b' }, { name: 'b', type: TYPE.symlink, linkname: 'a/x' }]));
    expect(err.message).toMatch(/^archive entry '[ab]' is a symlink loop$/);
  });

  it('rejects hard links to anything but an earlier file in the archive', async () => {
    expect((await rejection(tarGz([APP, { name: 'h', type: TYPE.hardlink, linkname: '/etc/shadow' }]))).message).toBe(
      "archive entry 'h' is a hard link to '/etc/shadow', which is not an earlier file in the archive",
    );
    expect((await rejection(tarGz([APP, { name: 'h', type: TYPE.hardlink, linkname: 'later.py' }, { name: 'later.py' }]))).message).toBe(
      "archive entry 'h' is a hard link to 'later.py', which is not an earlier file in the archive",
    );
  });

  it.each([
    [TYPE.charDevice, 'is a character device'],
    [TYPE.blockDevice, 'is a block device'],
    [TYPE.fifo, 'is a FIFO'],
  ])('rejects special files (type %j)', async (type, what) => {
    const err = await rejection(tarGz([APP, { name: 'dev/thing', type }]));
    expect(err.message).toBe(`archive entry 'dev/thing' ${what}; only files, folders and links are allowed`);
  });

  it('rejects unknown entry types', async () => {
    expect((await rejection(tarGz([APP, { name: 'sparse', type: 'S' }]))).message).toBe("archive entry 'sparse' has unsupported type 'S'");
  });

  it('rejects a file over the per-file limit', async () => {
    const err = await rejection(tarGz([APP, { name: 'big.bin', data: Buffer.alloc(2048) }]), { maxFileBytes: 1024 });
    expect(err.message).toBe("archive entry 'big.bin' is 2 KiB, over the 1 KiB limit per file");
  });

  it('rejects an archive whose files add up to more than the total limit', async () => {
    const files = [1, 2, 3].map((i) => ({ name: `f${i}`, data: Buffer.alloc(400) }));
    const err = await rejection(tarGz(files), { maxBytes: 1000 });
    expect(err.message).toBe("archive entry 'f3' takes the unpacked size past the 1000 bytes limit");
  });

  it('rejects more entries than the limit', async () => {
    const files = Array.from({ length: 11 }, (_, i) => ({ name: `f${i}`, data: 'x' }));
    expect((await rejection(tarGz(files), { maxEntries: 10 })).message).toBe("archive entry 'f10' is over the limit of 10 entries");
  });

  it('rejects a compressed archive over the upload limit before inflating it', async () => {
    const err = await rejection(tarGz([APP]), { maxArchiveBytes: 10 });
    expect(err.message).toMatch(/^archive is \d+ bytes, over the 10 bytes limit$/);
  });

  it('stops at the header of a 1 GiB file of zeros instead of inflating it', async () => {
    const bomb = zeroBomb(1024, fileHeader('zeros.bin', 1024 ** 3));
    expect(bomb.length).toBeLessThan(2 * 1024 * 1024);
    const started = Date.now();
    const err = await rejection(bomb);
    expect(err.message).toBe("archive entry 'zeros.bin' is 1 GiB, over the 256 MiB limit per file");
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('stops inflating at the end-of-archive marker, so 1 GiB of zeros is an empty archive, not a gigabyte of work', async () => {
    const started = Date.now();
    expect((await rejection(zeroBomb(1024))).message).toBe('archive has no files');
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('checks the running total at each header, before inflating that entry', async () => {
    // b.bin is within the per-file limit, but 100 MiB + 600 MiB is over the total: rejected before its body.
    const second = fileHeader('b.bin', 600 * 1024 * 1024);
    const bomb = Buffer.concat([gzipSync(fileHeader('a.bin', 100 * 1024 * 1024)), zeroBomb(100), zeroBomb(600, second)]);
    const started = Date.now();
    const err = await rejection(bomb, { maxFileBytes: 1024 ** 3 });
    expect(err.message).toBe("archive entry 'b.bin' takes the unpacked size past the 512 MiB limit");
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('rejects input that is not gzip at all', async () => {
    expect((await rejection(Buffer.from('PK\u0003\u0004 a zip file'))).message).toBe('archive is not gzip-compressed (a .tar.gz is expected)');
    expect((await rejection(rawTar([APP]))).message).toBe('archive is not gzip-compressed (a .tar.gz is expected)');
  });

  it('rejects gzip data that is not a tar', async () => {
    expect((await rejection(gzipSync(Buffer.from('hello '.repeat(200))))).message).toBe('archive is not a tar file');
  });

  it('rejects a truncated archive', async () => {
    const whole = tarGz([APP, { name: 'data.bin', data: Buffer.from(Array.from({ length: 50_000 }, (_, i) => i % 251)) }]);
    expect((await rejection(whole.subarray(0, Math.floor(whole.length / 2)))).message).toBe(
      'archive is truncated (unexpected end of gzip data)',
    );
    const cutTar = gzipSync(rawTar([APP, { name: 'data.bin', data: Buffer.alloc(5000, 1) }], { end: false }).subarray(0, 1500));
    expect((await rejection(cutTar)).message).toBe('archive is truncated');
  });

  it('rejects corrupt gzip data', async () => {
    const bytes = Buffer.from(tarGz([APP, { name: 'x', data: 'y'.repeat(1000) }]));
    bytes[bytes.length - 6] = bytes[bytes.length - 6]! ^ 0xff; // inside the CRC-32 trailer
    expect((await rejection(bytes)).message).toMatch(/^archive is corrupt \(gzip: .+\)$/);
  });

  it('rejects an archive with no files', async () => {
    expect((await rejection(tarGz([{ name: 'empty/', type: TYPE.directory }]))).message).toBe('archive has no files');
  });

  it('rejects a name used twice for different kinds of entry', async () => {
    const err = await rejection(tarGz([APP, { name: 'x', data: '1' }, { name: 'x', type: TYPE.symlink, linkname: 'wsgi.py' }]));
    expect(err.message).toBe("archive entry 'x' appears twice, as a file and as a symlink");
  });

  it('rejects a folder or link entry that claims a body', async () => {
    const err = await rejection(tarGz([APP, { name: 'd/', type: TYPE.directory, data: Buffer.alloc(600) }]));
    expect(err.message).toBe("archive entry 'd/' is a directory with 600 bytes of content");
  });

  it('rejects an oversized pax header', async () => {
    const err = await rejection(tarGz([{ ...APP, pax: { comment: 'x'.repeat(70_000) } }]));
    expect(err.message).toMatch(/^archive has a pax header of 68\.\d KiB, over the 64 KiB limit$/);
  });
});
