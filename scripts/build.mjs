// Compiles src/ to dist/ with tsc and copies the non-TypeScript files (the SQL migrations) beside it.
import { cpSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
rmSync(`${root}/dist`, { recursive: true, force: true });
try {
  execFileSync(process.execPath, [`${root}/node_modules/typescript/bin/tsc`, '-p', `${root}/tsconfig.json`], { stdio: 'inherit' });
} catch {
  process.exit(1);
}
mkdirSync(`${root}/dist/db`, { recursive: true });
cpSync(`${root}/src/db/migrations`, `${root}/dist/db/migrations`, { recursive: true });
writeFileSync(`${root}/dist/.built`, `${new Date().toISOString()}\n`);
