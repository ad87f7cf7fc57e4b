import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readLastLines, summarize, summarizeFailure } from '../../src/runner/log-tail.js';

const dir = mkdtempSync(join(tmpdir(), 'pier-tail-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('readLastLines', () => {
  it('returns the last lines, dropping a line cut by the byte limit', async () => {
    const path = join(dir, 'a.log');
    writeFileSync(path, Array.from({ length: 100 }, (_, i) => `line ${i}`).join('\n') + '\n');
    expect(await readLastLines(path, 3)).toEqual(['line 97', 'line 98', 'line 99']);
    expect(await readLastLines(path, 50, 20)).toEqual(['line 98', 'line 99']);
    expect(await readLastLines(join(dir, 'missing.log'))).toEqual([]);
  });
});

describe('summarizeFailure', () => {
  it('picks the last Python traceback through its exception line', () => {
    const lines = [
      'spawned uWSGI master process',
      'Traceback (most recent call last):',
      '  File "/app/wsgi.py", line 1, in <module>',
      'ValueError: old',
      'respawning',
      'Traceback (most recent call last):',
      '  File "/app/wsgi.py", line 3, in <module>',
      '    raise RuntimeError("boom")',
      'RuntimeError: boom',
      'unable to load app 0 (mountpoint=\'\') (callable not found or import error)',
    ];
    expect(summarizeFailure(lines)).toBe(lines.slice(5, 9).join('\n'));
  });

  it('falls back to lines that look like errors, then to the last lines', () => {
    expect(summarizeFailure(['ok', '[strict-mode] unknown config directive: foo', 'bye'])).toBe('[strict-mode] unknown config directive: foo');
    expect(summarizeFailure(['a', 'b'])).toBe('a\nb');
    expect(summarizeFailure([])).toBeUndefined();
  });
});

describe('summarize', () => {
  it("says whether it found the app's error or only the last lines of a quiet log", () => {
    expect(summarize(['Traceback (most recent call last):', '  File "x"', 'ValueError: boom'])).toEqual({ text: 'Traceback (most recent call last):\n  File "x"\nValueError: boom', isAppError: true });
    expect(summarize(['spawned uWSGI master process', 'spawned uWSGI worker 1 (pid: 7, cores: 4)'])).toEqual({ text: 'spawned uWSGI master process\nspawned uWSGI worker 1 (pid: 7, cores: 4)', isAppError: false });
    expect(summarize([])).toBeUndefined();
  });
});
