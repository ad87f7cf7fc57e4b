import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runBuildPhase } from '../../src/runner/build-phase.js';

const root = mkdtempSync(join(tmpdir(), 'pier-ph-build-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A release folder with an unpacked app (one file) and an empty venv. */
function release(name: string): string {
  const dir = join(root, name);
  mkdirSync(join(dir, 'app'), { recursive: true });
  mkdirSync(join(dir, 'venv', 'bin'), { recursive: true });
  writeFileSync(join(dir, 'app', 'settings.py'), 'DEBUG = False\n');
  return dir;
}

describe('build-phase', () => {
  it('runs the command in a copy of the app with its config and swaps the result in as the app folder', async () => {
    const dir = release('ok');
    const seen: string[] = [];
    await runBuildPhase({
      releaseDir: dir, command: 'echo "$GREETING" > static.txt && echo "built in $(basename $PWD)" && cat settings.py', config: { GREETING: 'hi' },
      timeoutMs: 10_000, onOutput: (line) => seen.push(line),
    });
    expect(readFileSync(join(dir, 'app', 'static.txt'), 'utf8')).toBe('hi\n');
    expect(readFileSync(join(dir, 'app', 'settings.py'), 'utf8')).toBe('DEBUG = False\n');
    expect(seen).toEqual([expect.stringMatching(/^built in \.build-app-\w+$/), 'DEBUG = False']);
    expect(readdirSync(dir).sort()).toEqual(['app', 'venv']);
  });

  it('leaves the app folder as it was when the build fails, and says why with its last lines', async () => {
    const dir = release('bad');
    const failing = runBuildPhase({ releaseDir: dir, command: 'touch half-built; echo "compiling"; echo "no such file: app.scss" >&2; exit 2', config: {}, timeoutMs: 10_000 });
    await expect(failing).rejects.toThrowError(/^build \(touch half-built; .*\) failed \(exit code 2\):\ncompiling\nno such file: app\.scss$/);
    expect(readdirSync(join(dir, 'app'))).toEqual(['settings.py']);
    expect(readdirSync(dir).sort()).toEqual(['app', 'venv']);
  });

  it('kills a build that runs past its time-out and fails it', async () => {
    const dir = release('slow');
    const started = Date.now();
    await expect(runBuildPhase({ releaseDir: dir, command: 'echo started; sleep 30', config: {}, timeoutMs: 500 }))
      .rejects.toMatchObject({ code: 'PIER_TIMEOUT', message: expect.stringMatching(/did not finish in time:\nstarted$/) });
    expect(Date.now() - started).toBeLessThan(5000);
    expect(readdirSync(join(dir, 'app'))).toEqual(['settings.py']);
  });
});
