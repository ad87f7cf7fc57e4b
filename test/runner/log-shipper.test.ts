/**
 * The runner's log shipper on real files and a real PUSH/PULL pair: new instances from the first byte, adopted
 * ones from the end, partial lines held until their newline (or a second), uWSGI's rotation followed without
 * losing the old file's tail, request lines told apart from the app's output.
 */
import { appendFileSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { shipperPerTest } from '../helpers/shipper.js';
import { waitFor } from '../helpers/wait.js';

let dir: string;
const ship = shipperPerTest();
const { received } = ship;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'pier-ship-'));
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function linesOf(instance: string): string[] {
  return received.filter((m) => m.origin === instance).map((m) => m.line);
}

describe('LogShipper', () => {
  it('ships a new instance from its first line, telling request lines from app output', async () => {
    const file = join(dir, 'a.log');
    writeFileSync(file, '*** Starting uWSGI 2.0.21 ***\nwhoami starting\n');
    ship.shipper.watch('web-v1-aaa', 'web', file, true);
    appendFileSync(file, '[pid: 12|app: 0|req: 1/1] 127.0.0.1 () {26 vars in 269 bytes} [Sun Nov 29 18:09:26 2026] GET / => generated 17 bytes\nserved /\n');
    await waitFor(() => linesOf('web-v1-aaa').length === 4, { name: 'four lines' });
    expect(received.map((m) => [m.app, m.source, m.line])).toEqual([
      ['web', 'app', '*** Starting uWSGI 2.0.21 ***'],
      ['web', 'app', 'whoami starting'],
      ['web', 'uwsgi', '[pid: 12|app: 0|req: 1/1] 127.0.0.1 () {26 vars in 269 bytes} [Sun Nov 29 18:09:26 2026] GET / => generated 17 bytes'],
      ['web', 'app', 'served /'],
    ]);
  });

  it('ships an adopted instance from the end of its file only', async () => {
    const file = join(dir, 'b.log');
    writeFileSync(file, 'old line shipped by the previous runner\n');
    ship.shipper.watch('web-v1-bbb', 'web', file, false);
    await ship.shipper.poll();
    appendFileSync(file, 'new line\n');
    await waitFor(() => linesOf('web-v1-bbb').length > 0, { name: 'new line' });
    await ship.shipper.poll();
    expect(linesOf('web-v1-bbb')).toEqual(['new line']);
  });

  it('holds a partial line until its newline, and ships it alone after a second', async () => {
    const file = join(dir, 'c.log');
    writeFileSync(file, '');
    ship.shipper.watch('web-v1-ccc', 'web', file, true);
    appendFileSync(file, 'hel');
    await ship.shipper.poll();
    appendFileSync(file, 'lo\nno newline yet');
    await waitFor(() => linesOf('web-v1-ccc').length === 1, { name: 'joined line' });
    expect(linesOf('web-v1-ccc')).toEqual(['hello']);
    await waitFor(() => linesOf('web-v1-ccc').length === 2, { name: 'partial line after a second', timeoutMs: 3000 });
    expect(linesOf('web-v1-ccc')).toEqual(['hello', 'no newline yet']);
  });

  it('follows a rotation: the old file is read to its end, then the new one from its start', async () => {
    const file = join(dir, 'd.log');
    writeFileSync(file, 'one\n');
    ship.shipper.watch('web-v1-ddd', 'web', file, true);
    await waitFor(() => linesOf('web-v1-ddd').length === 1, { name: 'first line' });
    // What uWSGI does at maxsize: the last writes land in the old file, it is renamed, a new one is opened.
    appendFileSync(file, 'two\n');
    renameSync(file, `${file}.1`);
    writeFileSync(file, 'three\n');
    await waitFor(() => linesOf('web-v1-ddd').length === 3, { name: 'all three lines' });
    expect(linesOf('web-v1-ddd')).toEqual(['one', 'two', 'three']);
  });

  it('ships the last words of an unwatched instance and then stops following it', async () => {
    const file = join(dir, 'e.log');
    writeFileSync(file, '');
    ship.shipper.watch('web-v1-eee', 'web', file, true);
    await ship.shipper.poll();
    appendFileSync(file, 'goodbye\nunfinished');
    await ship.shipper.unwatch('web-v1-eee');
    expect(ship.shipper.size).toBe(0);
    appendFileSync(file, 'after\n');
    await waitFor(() => linesOf('web-v1-eee').length === 2, { name: 'last words' });
    await ship.shipper.poll();
    expect(linesOf('web-v1-eee')).toEqual(['goodbye', 'unfinished']);
  });

  it('cuts an over-long line instead of dropping it or sending an invalid message', async () => {
    const file = join(dir, 'f.log');
    writeFileSync(file, `${'x'.repeat(40_000)}\nshort\n`);
    ship.shipper.watch('web-v1-fff', 'web', file, true);
    await waitFor(() => linesOf('web-v1-fff').includes('short'), { name: 'line after the long one' });
    expect(linesOf('web-v1-fff')[0]!.length).toBe(16 * 1024);
  });
});
