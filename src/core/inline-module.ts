/**
 * An ES module and every module it imports by relative path, read now and turned into one `data:` URL, so a
 * worker thread started later loads nothing from disk: a daemon that dropped root may no longer be able to read
 * its own checkout (one under /root, mode 0700). Built-ins (`node:…`) and bare package names are left as they
 * are; they must not be needed from disk after the drop (node built-ins never are).
 */
import { readFileSync } from 'node:fs';
import { PierError } from './errors.js';

/**
 * Static `import … from './x.js'`, `export … from '../y.js'` and `import './z.js'` statements of compiled output
 * (tsc prints each on one line, at its start; text in comments and strings is left alone).
 */
const RELATIVE_IMPORT = /^((?:import|export)\b[^'"\n;]*?\bfrom\s*|import\s*)(['"])(\.\.?\/[^'"\n]+)\2/gm;

/**
 * The `data:` URL of the module at `entry` with its relative imports inlined (depth first; one module imported
 * twice becomes the same URL, so the same module instance).
 * @throws PierError PIER_INTERNAL on an import cycle or a module that cannot be read
 */
export function inlineModule(entry: URL): URL {
  return new URL(inline(entry, new Map(), []));
}

function inline(url: URL, done: Map<string, string>, stack: string[]): string {
  const key = url.href;
  const known = done.get(key);
  if (known !== undefined) return known;
  if (stack.includes(key)) throw new PierError('PIER_INTERNAL', `cannot inline ${key}: import cycle through ${stack.join(' -> ')}`);
  let source: string;
  try {
    source = readFileSync(url, 'utf8');
  } catch (err) {
    throw new PierError('PIER_INTERNAL', `cannot read module ${key}: ${(err as Error).message}`, { cause: err });
  }
  stack.push(key);
  const rewritten = source
    .replace(/^\/\/# sourceMappingURL=.*$/m, '')
    .replace(RELATIVE_IMPORT, (_m, keyword: string, quote: string, specifier: string) => `${keyword}${quote}${inline(new URL(specifier, url), done, stack)}${quote}`);
  stack.pop();
  const dataUrl = `data:text/javascript;base64,${Buffer.from(rewritten).toString('base64')}`;
  done.set(key, dataUrl);
  return dataUrl;
}
