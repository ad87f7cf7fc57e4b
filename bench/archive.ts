/**
 * Archive check and unpack times (src/archive) next to two baselines on the same bytes: a plain inflate (zlib, no
 * tar parsing) and GNU tar's own listing (`tar -tzf`) and unpacking (`tar -xzf`). Archives: the deep-path attack
 * of issue #10 (one 'a/' × 20000 name; four of them), a normal app of 5,000 files, and the worst legal archive
 * for the check (49,000 entries with 800-byte names). `npx tsx bench/archive.ts [--runs 5]`.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { extractArchive, inspectArchive, packDirectory } from '../src/archive/index.js';
import { BLOCK, TYPE, encodeHeader, encodePax, paddingFor } from '../src/archive/tar-format.js';
import { intArg } from './common.js';

const runs = intArg('runs', 5);
const root = mkdtempSync(join(tmpdir(), 'pier-bench-archive-'));

/** A tar.gz of files named `names` (empty bodies, pax headers for long names), plus a wsgi.py. */
function namedTarGz(names: string[]): Buffer {
  const parts: Buffer[] = [];
  for (const name of ['wsgi.py', ...names]) {
    if (Buffer.byteLength(name) > 100) {
      const pax = encodePax({ path: name });
      parts.push(encodeHeader({ name: 'PaxHeader', mode: 0o644, size: pax.length, typeflag: TYPE.paxHeader }), pax, Buffer.alloc(paddingFor(pax.length)));
    }
    parts.push(encodeHeader({ name: name.slice(0, 100), mode: 0o644, size: 0, typeflag: TYPE.file }));
  }
  parts.push(Buffer.alloc(2 * BLOCK));
  return gzipSync(Buffer.concat(parts));
}

/** A Django-like app folder of `files` files (~2 KB of Python each) in packages up to 5 levels deep. */
async function normalApp(files: number): Promise<Buffer> {
  const dir = join(root, 'app');
  mkdirSync(dir);
  writeFileSync(join(dir, 'wsgi.py'), 'application = None\n');
  for (let i = 0; i < files - 1; i++) {
    const folder = join(dir, `pkg${i % 20}`, `mod${i % 7}`, `sub${i % 5}`, i % 3 === 0 ? 'templates/admin' : 'views');
    mkdirSync(folder, { recursive: true });
    writeFileSync(join(folder, `file_${i}.py`), `# file ${i}\n${'def view(request):\n    return render(request, "page.html", {"n": 1})\n'.repeat(25)}`);
  }
  return packDirectory(dir);
}

function median(times: number[]): number {
  const sorted = [...times].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function timed(fn: () => unknown): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    await fn();
    times.push(performance.now() - started);
  }
  return median(times);
}

/** What the check answers: 'ok' or the start of its error. */
async function verdict(bytes: Buffer): Promise<string> {
  return inspectArchive(bytes).then(() => 'accepted', (err: Error) => `rejected: ${err.message.replace(/'[^']{40,}'/, "'…'").slice(0, 70)}`);
}

async function main(): Promise<void> {
  const deep = `${'a/'.repeat(20_000)}x.py`;
  const long = `${'x'.repeat(200)}/${'y'.repeat(200)}/${'z'.repeat(200)}/${'w'.repeat(200)}`;
  const archives: Array<[string, Buffer]> = [
    ["deep path ('a/' × 20000)", namedTarGz([deep])],
    ['four deep paths', namedTarGz([1, 2, 3, 4].map((i) => `${deep}${i}`))],
    ['normal app, 5,000 files', await normalApp(5000)],
    ['49,000 entries, 800-byte names', namedTarGz(Array.from({ length: 49_000 }, (_, i) => `d${i % 100}/${long}/f${i}`))],
  ];
  const rows: string[][] = [['archive', 'bytes', 'inflate ms', 'tar -tzf ms', 'check ms', 'tar -xzf ms', 'unpack ms', 'verdict']];
  for (const [label, bytes] of archives) {
    const file = join(root, 'archive.tar.gz');
    writeFileSync(file, bytes);
    const inflate = await timed(() => gunzipSync(bytes));
    const tarList = await timed(() => execFileSync('tar', ['-tzf', file], { stdio: ['ignore', 'ignore', 'ignore'], maxBuffer: 1 << 30 }));
    const check = await timed(() => inspectArchive(bytes).catch(() => undefined));
    let n = 0;
    const tarExtract = await timed(() => {
      const dest = join(root, `tar-${n++}`);
      mkdirSync(dest);
      try {
        execFileSync('tar', ['-xzf', file, '-C', dest], { stdio: 'ignore' });
      } catch {
        // GNU tar unpacks what it can of the deep path (PATH_MAX stops it); its time is what matters here
      }
      rmSync(dest, { recursive: true, force: true });
    });
    const unpack = await timed(async () => {
      const dest = join(root, `pier-${n++}`);
      await extractArchive(bytes, dest).catch(() => undefined);
      rmSync(dest, { recursive: true, force: true });
    });
    rows.push([label, String(bytes.length), inflate, tarList, check, tarExtract, unpack].map((v) => (typeof v === 'number' ? v.toFixed(1) : v)));
    rows[rows.length - 1]!.push(await verdict(bytes));
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const row of rows) console.log(row.map((cell, i) => (i === 0 || i === row.length - 1 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  '));
  console.log(`median of ${runs} runs each; check = inspectArchive (the nexus's upload check), unpack = extractArchive (the runner's)`);
}

try {
  await main();
} finally {
  rmSync(root, { recursive: true, force: true });
}
