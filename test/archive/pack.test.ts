import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { compileIgnore, extractArchive, inspectArchive, packDirectory } from '../../src/archive/index.js';
import { ValidationError } from '../../src/core/errors.js';

const root = mkdtempSync(join(tmpdir(), 'pier-pack-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function writeTree(dir: string, files: Record<string, string>): void {
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
}

function listTree(dir: string, prefix = ''): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const path = `${prefix}${d.name}`;
    return d.isDirectory() ? [`${path}/`, ...listTree(join(dir, d.name), `${path}/`)] : [path];
  });
}

describe('packDirectory', () => {
  const src = join(root, 'app');
  const longName = `lib/${'very-long-folder-name/'.repeat(8)}module.py`;
  writeTree(src, {
    'wsgi.py': 'def application(e, s): pass\n',
    'requirements.txt': 'flask\n',
    '.pierignore': '# local things\n\n*.log\nbuild/\n/local_settings.py\nnotes\ndocs/**/draft.md\n',
    'debug.log': 'x',
    'logs/app.log': 'x',
    'build/out.txt': 'x',
    'local_settings.py': 'x',
    'pkg/local_settings.py': 'kept: only the root one is anchored',
    'notes/todo.txt': 'x',
    'docs/a/b/draft.md': 'x',
    'docs/readme.md': 'kept',
    '.git/HEAD': 'ref: refs/heads/main\n',
    'café.txt': 'unicode name',
    [longName]: 'x = 1\n',
  });
  chmodSync(join(src, 'wsgi.py'), 0o755);
  symlinkSync('wsgi.py', join(src, 'main.py'));

  it('round-trips through extractArchive, honouring .pierignore and skipping .git', async () => {
    const bytes = await packDirectory(src, { ignore: ['requirements.txt'] });
    const dest = join(root, 'unpacked');
    await extractArchive(bytes, dest);
    expect(listTree(dest).sort()).toEqual(
      [
        '.pierignore', 'café.txt', 'docs/', 'docs/a/', 'docs/a/b/', 'docs/readme.md', 'lib/', 'main.py', 'pkg/',
        'pkg/local_settings.py', 'wsgi.py', 'logs/', longName,
        ...longName.split('/').slice(1, -1).map((_, i, parts) => `lib/${parts.slice(0, i + 1).join('/')}/`),
      ].sort(),
    );
    expect(readFileSync(join(dest, longName), 'utf8')).toBe('x = 1\n');
    expect(statSync(join(dest, 'wsgi.py')).mode & 0o777).toBe(0o755);
    expect(readFileSync(join(dest, 'main.py'), 'utf8')).toBe('def application(e, s): pass\n');
  });

  it('packs the same folder to the same bytes', async () => {
    const [a, b] = [await packDirectory(src), await packDirectory(src)];
    expect(a.equals(b)).toBe(true);
  });

  it('writes archives GNU tar reads', async () => {
    const bytes = await packDirectory(src);
    const out = join(root, 'gnu');
    mkdirSync(out);
    execFileSync('tar', ['-xzf', '-', '-C', out], { input: bytes });
    expect(readFileSync(join(out, longName), 'utf8')).toBe('x = 1\n');
    expect(readFileSync(join(out, 'café.txt'), 'utf8')).toBe('unicode name');
    const summary = await inspectArchive(bytes);
    expect(summary.entries.find((e) => e.path === 'main.py')).toMatchObject({ type: 'symlink', linkTarget: 'wsgi.py' });
  });

  it('reads archives GNU tar writes, including its long-name headers', async () => {
    const bytes = execFileSync('tar', ['--format=gnu', '-czf', '-', '-C', src, '.']);
    const summary = await inspectArchive(bytes);
    expect(summary.entries.map((e) => e.path)).toContain(longName);
    expect(summary.entries.map((e) => e.path)).toContain('.git/HEAD');
  });
});

describe('compileIgnore', () => {
  it('matches names at any depth, folders only with a trailing slash, and anchors patterns with a slash', () => {
    const m = compileIgnore(['*.pyc', 'cache/', '/top.txt', 'a/b', '?.tmp', 'x/**', '**/deep.md']);
    expect(m.isIgnored('pkg/mod.pyc', false)).toBe(true);
    expect(m.isIgnored('cache', true)).toBe(true);
    expect(m.isIgnored('src/cache', true)).toBe(true);
    expect(m.isIgnored('cache', false)).toBe(false);
    expect(m.isIgnored('top.txt', false)).toBe(true);
    expect(m.isIgnored('sub/top.txt', false)).toBe(false);
    expect(m.isIgnored('a/b', false)).toBe(true);
    expect(m.isIgnored('z/a/b', false)).toBe(false);
    expect(m.isIgnored('1.tmp', false)).toBe(true);
    expect(m.isIgnored('12.tmp', false)).toBe(false);
    expect(m.isIgnored('x/y/z', false)).toBe(true);
    expect(m.isIgnored('deep.md', false)).toBe(true);
    expect(m.isIgnored('q/r/deep.md', false)).toBe(true);
    expect(m.isIgnored('mod.py', false)).toBe(false);
  });

  it('rejects the gitignore features it does not support', () => {
    expect(() => compileIgnore(['ok', '!keep.txt'])).toThrow(new ValidationError(".pierignore line 2: negation ('!') is not supported"));
    expect(() => compileIgnore(['[ab].txt'])).toThrow(".pierignore line 1: character classes ('[...]') are not supported");
  });
});
