import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runReleasePhase } from '../../src/runner/phase-runner.js';
import { waitFor } from '../helpers/wait.js';

const dir = mkdtempSync(join(tmpdir(), 'pier-ph-phase-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const base = { appDir: dir, venvDir: join(dir, 'venv'), home: dir, timeoutMs: 10_000 };

describe('phase-runner', () => {
  it('runs the command in the release environment, streaming its lines', async () => {
    const seen: string[] = [];
    await runReleasePhase({
      ...base, command: 'echo "$GREETING from $PWD"; echo "$PATH" | cut -d: -f1; echo "$VIRTUAL_ENV" >&2', config: { GREETING: 'hi' },
      onOutput: (line) => seen.push(line),
    });
    expect(seen.sort()).toEqual([`hi from ${dir}`, join(dir, 'venv'), join(dir, 'venv', 'bin')].sort());
  });

  it('fails with the exit code and the last lines on a non-zero exit', async () => {
    const failing = runReleasePhase({ ...base, command: 'for i in $(seq 1 30); do echo "line $i"; done; exit 3', config: {} });
    await expect(failing).rejects.toThrowError(/failed \(exit code 3\):\nline 16\n[\s\S]*line 30$/);
    await expect(failing).rejects.toMatchObject({ code: 'PIER_VALIDATION' });
  });

  it('kills the whole process group at the time-out, background children too', async () => {
    const marker = join(dir, 'child.pid');
    const started = Date.now();
    const slow = runReleasePhase({ ...base, command: `sleep 30 & echo $! > ${marker}; echo waiting; wait`, config: {}, timeoutMs: 500 });
    await expect(slow).rejects.toMatchObject({ code: 'PIER_TIMEOUT', message: expect.stringMatching(/did not finish in 1 s:\nwaiting$/) });
    expect(Date.now() - started).toBeLessThan(5000);
    const { readFileSync } = await import('node:fs');
    const pid = Number(readFileSync(marker, 'utf8'));
    await waitFor(() => {
      try {
        process.kill(pid, 0);
        return undefined;
      } catch {
        return true;
      }
    }, { name: 'the background child is gone', timeoutMs: 3000 });
  });

  it('applies the open-files limit before the command runs', async () => {
    const seen: string[] = [];
    await runReleasePhase({ ...base, command: 'ulimit -n', config: {}, openFiles: 123, onOutput: (l) => seen.push(l) });
    expect(seen).toEqual(['123']);
  });
});
