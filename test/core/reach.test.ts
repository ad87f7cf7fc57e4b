import { mkdirSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { APP_USERS_REACH, assertReachableByOthers, makeFolders, unsearchableAbove } from '../../src/core/reach.js';
import { privateTempDir, searchableTempDir } from '../helpers/data-dir.js';

const made: string[] = [];
function temp(kind: 'private' | 'searchable'): string {
  const dir = kind === 'private' ? privateTempDir('pier-fr-reach-') : searchableTempDir('pier-fr-reach-');
  made.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('core/reach', () => {
  it('names the first private folder above a path that does not exist yet', () => {
    const root = temp('private');
    expect(unsearchableAbove(join(root, 'a', 'b', 'postgres'))).toBe(root);
  });

  it('finds nothing when every folder on the way is searchable, and does not check the target itself', () => {
    const root = temp('searchable');
    mkdirSync(join(root, 'own'), { mode: 0o700 });
    expect(unsearchableAbove(join(root, 'own'))).toBeUndefined();
    expect(unsearchableAbove(join(root, 'own', 'cluster'))).toBe(join(root, 'own'));
  });

  it('follows a symbolic link to the real folders on the way', () => {
    const open = temp('searchable');
    const hidden = temp('private');
    mkdirSync(join(hidden, 'data'));
    symlinkSync(join(hidden, 'data'), join(open, 'link'));
    expect(unsearchableAbove(join(open, 'link', 'postgres'))).toBe(hidden);
  });

  it('throws one line naming the folder and the fix', () => {
    const root = temp('private');
    const target = join(root, 'runner-x');
    expect(() => assertReachableByOthers(target, APP_USERS_REACH)).toThrow(
      `apps run as their own users, who cannot reach '${target}': '${root}' is not searchable by others; run 'chmod o+x ${root}', move the data folder, or set runner.appUsers = false`,
    );
  });

  it('sets the mode of the folders it creates whatever the umask, and leaves existing folders alone', () => {
    const root = temp('private');
    const previous = process.umask(0o077);
    try {
      expect(makeFolders(join(root, 'a', 'b'), 0o711)).toEqual([join(root, 'a'), join(root, 'a', 'b')]);
      expect(makeFolders(join(root, 'a', 'b'), 0o711)).toEqual([]);
    } finally {
      process.umask(previous);
    }
    expect(statSync(join(root, 'a')).mode & 0o777).toBe(0o755);
    expect(statSync(join(root, 'a', 'b')).mode & 0o777).toBe(0o711);
    expect(statSync(root).mode & 0o777).toBe(0o700);
  });
});
