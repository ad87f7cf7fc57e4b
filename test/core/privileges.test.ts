/**
 * Dropping root for good (a real process drops to `nobody` and tries to take root back), the user checks, and
 * handing the stats folder to the daemon user without root ever following a link the user planted.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, linkSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { chownTree, lookupUser, resolveDaemonUser } from '../../src/core/privileges.js';

const nobody = lookupUser('nobody')!;
const dist = fileURLToPath(new URL('../../dist/core/privileges.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'pier-lp-priv-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('privileges', () => {
  it('drops a real process to the user for good: no uid 0 left, setuid(0) refused, root files unreadable', () => {
    const secret = join(dir, 'secret');
    writeFileSync(secret, 'root only\n', { mode: 0o600 });
    const script = `
      import { readFileSync } from 'node:fs';
      const { dropPrivileges, lookupUser } = await import(${JSON.stringify(dist)});
      dropPrivileges(lookupUser('nobody'));
      const ids = [process.getuid(), process.geteuid(), process.getgid(), process.getegid()];
      let regained = 'no'; try { process.setuid(0); regained = 'yes'; } catch (err) { regained = err.code; }
      let read = 'no'; try { readFileSync(${JSON.stringify(secret)}); read = 'yes'; } catch (err) { read = err.code; }
      const status = readFileSync('/proc/self/status', 'utf8');
      console.log(JSON.stringify({ ids, groups: process.getgroups(), regained, read, uidLine: /^Uid:(.*)$/m.exec(status)[1].trim() }));`;
    const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(result.stderr).toBe('');
    const out = JSON.parse(result.stdout) as { ids: number[]; groups: number[]; regained: string; read: string; uidLine: string };
    expect(out.ids).toEqual([nobody.uid, nobody.uid, nobody.gid, nobody.gid]);
    expect(out.groups.includes(0)).toBe(false);
    expect(out.regained).toBe('EPERM');
    expect(out.read).toBe('EACCES');
    expect(out.uidLine.split(/\s+/).map(Number)).toEqual([nobody.uid, nobody.uid, nobody.uid, nobody.uid]);
  });

  it('names an unknown user and the fix; "root" and "" keep root', () => {
    expect(() => resolveDaemonUser('lp-no-such-user')).toThrow(/^security.user 'lp-no-such-user' does not exist; create it \(useradd --system/);
    expect(resolveDaemonUser('')).toBeUndefined();
    expect(resolveDaemonUser('root')).toBeUndefined();
    expect(resolveDaemonUser('nobody')).toEqual(nobody);
  });

  it('hands a root-made stats folder over without following links or chowning hard-linked files', () => {
    const stats = join(dir, 'stats');
    const sentinel = join(dir, 'sentinel');
    const hardTarget = join(dir, 'hard-target');
    writeFileSync(sentinel, 'root owned\n', { mode: 0o600 });
    writeFileSync(hardTarget, 'root owned\n', { mode: 0o600 });
    mkdirSync(join(stats, 'logs', 'app'), { recursive: true, mode: 0o755 });
    writeFileSync(join(stats, 'logs', 'app', '000001.log'), 'line\n');
    symlinkSync(sentinel, join(stats, 'logs', 'app', '000002.log'));
    symlinkSync(dir, join(stats, 'logs', 'evil'));
    linkSync(hardTarget, join(stats, 'logs', 'app', '000003.log'));
    chownTree(stats, nobody);
    for (const path of [stats, join(stats, 'logs'), join(stats, 'logs', 'app'), join(stats, 'logs', 'app', '000001.log')]) {
      expect(statSync(path).uid, path).toBe(nobody.uid);
    }
    expect(statSync(join(stats, 'logs', 'app')).mode & 0o777).toBe(0o700);
    for (const path of [sentinel, hardTarget, dir]) expect(statSync(path).uid, path).toBe(0);
  });

  it('only sets the mode of a folder the user already owns: root never walks a tree the user controls', () => {
    const owned = join(dir, 'owned');
    mkdirSync(join(owned, 'inner'), { recursive: true });
    const planted = join(owned, 'inner', 'planted');
    writeFileSync(planted, 'x');
    chownSync(owned, nobody.uid, nobody.gid);
    chmodSync(owned, 0o755);
    chownTree(owned, nobody);
    expect(statSync(owned).mode & 0o777).toBe(0o700);
    expect(statSync(planted).uid).toBe(0); // not walked
  });
});
