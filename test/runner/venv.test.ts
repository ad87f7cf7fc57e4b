import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/core/errors.js';
import { silentLogger } from '../../src/core/logger.js';
import { VENV_MARKER, buildVirtualenv } from '../../src/runner/venv.js';
import { tempDirForFile } from '../helpers/uwsgi.js';

const root = tempDirForFile('pier-venv-');
const wheels = join(root, 'wheels');
const pipArgs = ['--no-index', '--find-links', wheels];

/** Writes a minimal pure-Python wheel (pier_demo 1.0), since pip has no index here. */
function writeWheel(): void {
  mkdirSync(wheels, { recursive: true });
  const script = `
import base64, hashlib, sys, zipfile
dist = "pier_demo-1.0.dist-info"
files = {
    "pier_demo/__init__.py": "GREETING = 'from a wheel'\\n",
    dist + "/METADATA": "Metadata-Version: 2.1\\nName: pier-demo\\nVersion: 1.0\\n",
    dist + "/WHEEL": "Wheel-Version: 1.0\\nGenerator: pier-test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
}
record = []
with zipfile.ZipFile(sys.argv[1] + "/pier_demo-1.0-py3-none-any.whl", "w") as whl:
    for name, text in files.items():
        data = text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
        whl.writestr(name, data)
    whl.writestr(dist + "/RECORD", "\\n".join(record + [dist + "/RECORD,,"]) + "\\n")
`;
  execFileSync('/usr/bin/python3', ['-c', script, wheels]);
}

function app(name: string, requirements?: string): string {
  const dir = join(root, 'apps', name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'wsgi.py'), 'application = None\n');
  if (requirements !== undefined) writeFileSync(join(dir, 'requirements.txt'), requirements);
  return dir;
}

beforeAll(writeWheel);

describe('buildVirtualenv', () => {
  it('builds a venv on the system Python without pip when there are no requirements, then reuses it', async () => {
    const venvDir = join(root, 'venvs', 'plain');
    const first = await buildVirtualenv({ appDir: app('plain'), venvDir, log: silentLogger() });
    expect(first.isReused).toBe(false);
    expect(existsSync(join(venvDir, VENV_MARKER))).toBe(true);
    expect(existsSync(join(venvDir, 'bin', 'pip'))).toBe(false);
    // --system-site-packages: Debian's own packages are importable.
    const out = execFileSync(join(venvDir, 'bin', 'python'), ['-c', 'import sys, venv; print(sys.prefix)']).toString().trim();
    expect(out).toBe(venvDir);
    const second = await buildVirtualenv({ appDir: app('plain'), venvDir, log: silentLogger() });
    expect(second.isReused).toBe(true);
  });

  it('installs requirements.txt with the given pip arguments and streams pip output', async () => {
    const venvDir = join(root, 'venvs', 'demo');
    const lines: string[] = [];
    await buildVirtualenv({ appDir: app('demo', 'pier-demo==1.0\n'), venvDir, pipArgs, log: silentLogger(), onOutput: (l) => lines.push(l) });
    const out = execFileSync(join(venvDir, 'bin', 'python'), ['-c', 'import pier_demo; print(pier_demo.GREETING)']).toString().trim();
    expect(out).toBe('from a wheel');
    expect(lines.some((l) => l.includes('Successfully installed pier-demo-1.0'))).toBe(true);
  });

  it('rebuilds when requirements.txt changes', async () => {
    const venvDir = join(root, 'venvs', 'changing');
    const dir = app('changing');
    await buildVirtualenv({ appDir: dir, venvDir, pipArgs, log: silentLogger() });
    writeFileSync(join(dir, 'requirements.txt'), 'pier-demo\n');
    const rebuilt = await buildVirtualenv({ appDir: dir, venvDir, pipArgs, log: silentLogger() });
    expect(rebuilt.isReused).toBe(false);
    expect(existsSync(join(venvDir, 'lib', 'python3.11', 'site-packages', 'pier_demo'))).toBe(true);
  });

  it("fails with the end of pip's output when a requirement cannot be installed, leaving no venv", async () => {
    const venvDir = join(root, 'venvs', 'missing');
    const err = await buildVirtualenv({ appDir: app('missing', 'pier-missing-package==9.9\n'), venvDir, pipArgs, log: silentLogger() }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as Error).message).toMatch(/^pip install -r requirements\.txt failed \(exit code 1\):\n/);
    expect((err as Error).message).toContain('No matching distribution found for pier-missing-package==9.9');
    expect(existsSync(venvDir)).toBe(false);
  });

  it('gives up after timeoutMs', async () => {
    const venvDir = join(root, 'venvs', 'slow');
    await expect(
      buildVirtualenv({ appDir: app('slow', 'pier-demo\n'), venvDir, pipArgs, log: silentLogger(), timeoutMs: 300 }),
    ).rejects.toThrow(/did not finish in time/);
    expect(existsSync(venvDir)).toBe(false);
  });
});
