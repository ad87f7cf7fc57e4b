/** Loads configuration: schema defaults < TOML file < PIER_* env < explicit overrides, validated and frozen. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { Kind, type TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { Value } from '@sinclair/typebox/value';
import { trustedProxies } from '../balancer/trusted-proxies.js';
import { ConfigError } from '../core/errors.js';
import { defaultDataDir } from './paths.js';
import { PierConfig, REMOVED_SETTINGS } from './schema.js';

const checker = TypeCompiler.Compile(PierConfig);

/** A partial config at any depth, as given by a file, env or overrides. */
export type ConfigInput = { [key: string]: unknown };

export interface LoadConfigOptions {
  /** TOML file to read; it must exist when given. */
  file?: string;
  /** Environment to read PIER_* variables from (never read implicitly). @default {} */
  env?: Record<string, string | undefined>;
  /** Highest-precedence values (CLI flags, tests). */
  overrides?: ConfigInput;
}

// The data folder used when none is configured: paths.ts (the CLI needs it without loading the schema).
export { defaultDataDir } from './paths.js';

export function loadConfig(options: LoadConfigOptions = {}): PierConfig {
  const env = options.env ?? {};
  const fromFile = options.file === undefined ? {} : readTomlFile(options.file);
  const fromEnv = envLayer(env);
  const merged = deepMerge(deepMerge(fromFile, fromEnv), options.overrides ?? {});
  let config: PierConfig;
  try {
    config = validateConfig(merged);
  } catch (err) {
    // Name the layer that set the bad value: an explicit override, then the environment, then the file.
    const path = String((err as ConfigError).details?.path ?? '').split('.').filter(Boolean);
    const source = hasPath(options.overrides ?? {}, path)
      ? 'override'
      : hasPath(fromEnv, path)
        ? `env ${envName(path)}`
        : options.file === undefined ? 'config' : `file ${options.file}`;
    throw new ConfigError((err as ConfigError).message.replace(/^config: /, `${source}: `), { cause: err });
  }
  if (config.dataDir === '') config.dataDir = defaultDataDir(env);
  if (config.security.keysDir === '') config.security.keysDir = join(config.dataDir, 'keys');
  return deepFreeze(config);
}

/** Applies defaults and checks `input` against the schema; the error names the first bad key and the source. */
export function validateConfig(input: ConfigInput, source = 'config'): PierConfig {
  for (const { path, fix } of REMOVED_SETTINGS) {
    const found = findSetting(input, path.split('.'));
    if (found) throw new ConfigError(`${source}: ${found} was removed: ${fix}`, { details: { path: found } });
  }
  const withDefaults = Value.Default(PierConfig, structuredClone(input)) as unknown;
  if (!checker.Check(withDefaults)) {
    const first = checker.Errors(withDefaults).First();
    const path = first ? first.path.replace(/^\//, '').replaceAll('/', '.') : '';
    const what = first ? describeError(first.schema, first.value, first.message) : 'is invalid';
    throw new ConfigError(`${source}: ${path === '' ? 'config' : path} ${what}`, { details: { path } });
  }
  checkAddonPorts(withDefaults as PierConfig, source);
  try {
    trustedProxies((withDefaults as PierConfig).balancer.trustedProxies);
  } catch (err) {
    throw new ConfigError(`${source}: ${(err as Error).message}`, { details: { path: 'balancer.trustedProxies' } });
  }
  return withDefaults as PierConfig;
}

/** The add-on port range must be a range (by default apart from the instance range, which the balancer routes). */
function checkAddonPorts(config: PierConfig, source: string): void {
  const { addonPortMin, addonPortMax } = config.runner;
  const details = { path: 'runner.addonPortMin' };
  if (addonPortMin > addonPortMax) {
    throw new ConfigError(`${source}: runner.addonPortMin (${addonPortMin}) is above runner.addonPortMax (${addonPortMax}); swap them`, { details });
  }
  // An overlap with portMin..portMax is not refused (tests and operators move the instance range freely): a port
  // taken by the other side fails that start, and the instance or the add-on server moves to another port.
}

/** The concrete path (`cluster.stats.0.uwsgiLog`) of a removed setting in `input`; `[]` in a segment walks an array. */
function findSetting(input: unknown, segments: string[], at: string[] = []): string | undefined {
  if (segments.length === 0) return at.join('.');
  if (typeof input !== 'object' || input === null) return undefined;
  const [head, ...rest] = segments as [string, ...string[]];
  const key = head.endsWith('[]') ? head.slice(0, -2) : head;
  if (!Object.hasOwn(input, key)) return undefined;
  const value = (input as ConfigInput)[key];
  if (!head.endsWith('[]')) return findSetting(value, rest, [...at, key]);
  if (!Array.isArray(value)) return undefined;
  for (const [i, item] of value.entries()) {
    const found = findSetting(item, rest, [...at, key, String(i)]);
    if (found) return found;
  }
  return undefined;
}

function describeError(schema: TSchema, value: unknown, message: string): string {
  if (schema[Kind] === 'Never' || message.includes('Unexpected property')) return 'is not a known setting';
  if (typeof value === 'number' && typeof schema.minimum === 'number' && typeof schema.maximum === 'number') {
    return `must be ${schema.minimum}..${schema.maximum}`;
  }
  return message.charAt(0).toLowerCase() + message.slice(1);
}

function readTomlFile(file: string): ConfigInput {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file '${file}': ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { cause: err });
  }
  try {
    return parseToml(text) as ConfigInput;
  } catch (err) {
    const first = String((err as Error).message).split('\n')[0];
    throw new ConfigError(`file ${file}: invalid TOML: ${first}`, { cause: err });
  }
}

/** The variable a setting came from, for messages. */
function envName(path: string[]): string {
  if (path.join('.') === 'db.url') return 'PIER_DB_URL or DATABASE_URL';
  return `PIER_${path.map((p) => p.replace(/[A-Z]/g, (c) => `_${c}`)).join('_').toUpperCase()}`;
}

function hasPath(layer: ConfigInput, path: string[]): boolean {
  let node: unknown = layer;
  for (const key of path) {
    if (typeof node !== 'object' || node === null || !Object.hasOwn(node, key)) return false;
    node = (node as ConfigInput)[key];
  }
  return path.length > 0;
}

/** Maps PIER_SECTION_KEY (and DATABASE_URL) onto scalar settings, parsing by the schema's type. */
function envLayer(env: Record<string, string | undefined>): ConfigInput {
  const out: ConfigInput = {};
  const databaseUrl = env.PIER_DB_URL ?? env.DATABASE_URL;
  if (databaseUrl) setPath(out, ['db', 'url'], databaseUrl);
  if (env.PIER_DATA) setPath(out, ['dataDir'], env.PIER_DATA);
  walkScalars(PierConfig, [], (path, schema) => {
    const name = `PIER_${path.map((p) => p.replace(/[A-Z]/g, (c) => `_${c}`)).join('_').toUpperCase()}`;
    const raw = env[name];
    if (raw === undefined || raw === '') return;
    setPath(out, path, parseScalar(raw, schema, name));
  });
  return out;
}

function walkScalars(schema: TSchema, path: string[], visit: (path: string[], schema: TSchema) => void): void {
  if (schema.type === 'object' && schema.properties) {
    for (const [key, child] of Object.entries(schema.properties as Record<string, TSchema>)) walkScalars(child, [...path, key], visit);
  } else if (schema.type !== 'array') {
    visit(path, schema);
  }
}

function parseScalar(raw: string, schema: TSchema, name: string): unknown {
  if (schema.type === 'integer' || schema.type === 'number') {
    const n = Number(raw);
    if (!Number.isFinite(n)) throw new ConfigError(`env ${name}: '${raw}' is not a number`);
    return n;
  }
  if (schema.type === 'boolean') {
    if (/^(1|true|yes|on)$/i.test(raw)) return true;
    if (/^(0|false|no|off)$/i.test(raw)) return false;
    throw new ConfigError(`env ${name}: '${raw}' is not a boolean (use true or false)`);
  }
  return raw;
}

function setPath(target: ConfigInput, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    if (typeof node[key] !== 'object' || node[key] === null) node[key] = {};
    node = node[key] as ConfigInput;
  }
  node[path[path.length - 1]!] = value;
}

function isPlainObject(v: unknown): v is ConfigInput {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** Merges `b` over `a`; objects merge key by key, arrays and scalars replace. */
export function deepMerge(a: ConfigInput, b: ConfigInput): ConfigInput {
  const out: ConfigInput = { ...a };
  for (const [key, value] of Object.entries(b)) {
    out[key] = isPlainObject(value) && isPlainObject(out[key]) ? deepMerge(out[key] as ConfigInput, value) : value;
  }
  return out;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
