/** Per-instance cgroups, for real (as root, v1): limits written, processes kept in, everything killed on removal. */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import { Cgroups } from '../../src/runner/cgroups.js';

const cgroups = (await Cgroups.open({ group: `rl-test-${randomId()}` }))!;
afterAll(() => cgroups.removeAll());

describe('Cgroups', () => {
  it('writes the limits, and on removal kills every process left inside, even ones that fork', async () => {
    expect(cgroups).toBeDefined();
    const [memory, pids, cpu] = await cgroups.create('rl-inst', { memoryMb: 64, processes: 16, openFiles: 256, cpuShares: 128, requestTimeoutMs: 5000 });
    expect(readFileSync(join(memory!, 'memory.limit_in_bytes'), 'utf8').trim()).toBe(String(64 * 1024 * 1024));
    expect(readFileSync(join(pids!, 'pids.max'), 'utf8').trim()).toBe('16');
    expect(readFileSync(join(cpu!, 'cpu.shares'), 'utf8').trim()).toBe('128');
    // A process that keeps forking children, put into the cgroup (as uWSGI's `cgroup` option does for a vassal).
    // It waits on a builtin `read` (no fork) until it is inside, so none of its children starts outside.
    const child = spawn('sh', ['-c', 'read go; while true; do sleep 30 & sleep 0.05; done'], { stdio: ['pipe', 'ignore', 'ignore'] });
    for (const dir of [memory!, pids!, cpu!]) writeFileSync(join(dir, 'cgroup.procs'), String(child.pid));
    child.stdin!.write('go\n');
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect((await cgroups.processes('rl-inst')).length).toBeGreaterThan(3);
    expect((await cgroups.counters('rl-inst')).forksRefused).toBe(0);
    expect(await cgroups.list()).toEqual(['rl-inst']);
    await cgroups.remove('rl-inst');
    for (const dir of [memory!, pids!, cpu!]) expect(existsSync(dir)).toBe(false);
    if (child.exitCode === null && child.signalCode === null) await new Promise((resolve) => child.once('exit', resolve));
    expect(child.signalCode).toBe('SIGKILL');
    expect(await cgroups.list()).toEqual([]);
    await cgroups.remove('rl-inst'); // twice is fine
  });
});
