// The whole test suite: build (daemons are spawned from dist/), run vitest, and end with the plain line
// `N passed, N failed` that CI reads. Exits non-zero on any failure, skipped test, or a run with no tests.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const results = `${root}/.vitest-results.json`;
const extra = process.argv.slice(2);

// The Debian packages the suite needs (scripts/test-packages.txt): installed when missing as root, else named.
const packages = readFileSync(`${root}/scripts/test-packages.txt`, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
const installed = (pkg) => /install ok installed/.test(spawnSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' }).stdout ?? '');
const missing = spawnSync('dpkg-query', ['--version']).status === 0 ? packages.filter((pkg) => !installed(pkg)) : [];
if (missing.length > 0) {
  if (process.getuid?.() !== 0) {
    console.error(`error: the tests need Debian packages; install them with: sudo apt-get install -y ${missing.join(' ')}`);
    console.log('0 passed, 1 failed');
    process.exit(1);
  }
  console.error(`test: installing Debian packages: ${missing.join(' ')}…`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const apt = spawnSync('sh', ['-c', 'apt-get update -qq && apt-get install -y -qq "$@" >/dev/null', 'sh', ...missing], { stdio: 'inherit', env });
  if (apt.status !== 0) {
    console.error(`error: apt-get install ${missing.join(' ')} failed; install them and run npm test again`);
    console.log('0 passed, 1 failed');
    process.exit(1);
  }
}

const build = spawnSync(process.execPath, [`${root}/scripts/build.mjs`], { stdio: 'inherit', cwd: root });
if (build.status !== 0) {
  console.log('0 passed, 1 failed');
  process.exit(1);
}
// The tests are TypeScript too: vitest strips their types without checking them, so check them here.
const typecheck = spawnSync(process.execPath, [`${root}/node_modules/typescript/bin/tsc`, '-p', `${root}/tsconfig.tests.json`], { stdio: 'inherit', cwd: root });
if (typecheck.status !== 0) {
  console.log('0 passed, 1 failed');
  process.exit(1);
}
// Drills whose assertions are timings under load (failover budgets, a neighbour's p99 beside a fork bomb, pings
// during an upload attack) run after the rest, one file at a time, so that what they measure is the platform
// and not another test file's fork bomb on the same two cores. With file filters, one run does what was asked.
const SOLO = ['test/faults/', 'test/e2e/tenant-limits.test.ts', 'test/e2e/upload-limits.test.ts'];
const runs = extra.length > 0
  ? [{ args: extra }]
  : [{ args: SOLO.flatMap((path) => ['--exclude', `${path}${path.endsWith('/') ? '**' : ''}`]) }, { args: [...SOLO, '--maxWorkers=1'] }];
let passed = 0;
let failed = 0;
let skipped = 0;
for (const { args } of runs) {
  rmSync(results, { force: true });
  const run = spawnSync(
    process.execPath,
    [`${root}/node_modules/vitest/vitest.mjs`, 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${results}`, ...args],
    { stdio: 'inherit', cwd: root, env: { ...process.env, FORCE_COLOR: process.env.CI ? '0' : (process.env.FORCE_COLOR ?? '1') } },
  );
  let runFailed = 0;
  if (existsSync(results)) {
    const report = JSON.parse(readFileSync(results, 'utf8'));
    passed += report.numPassedTests ?? 0;
    runFailed = (report.numFailedTests ?? 0) + (report.numFailedTestSuites ?? 0);
    skipped += (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
  } else {
    runFailed = 1;
  }
  if (run.status !== 0 && runFailed === 0) runFailed = 1;
  failed += runFailed;
}
console.log(skipped > 0 ? `${passed} passed, ${failed} failed, ${skipped} skipped` : `${passed} passed, ${failed} failed`);
process.exit(failed > 0 || skipped > 0 || passed === 0 ? 1 : 0);
