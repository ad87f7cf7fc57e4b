/**
 * Where the CLI finds the API and a token: PIER_API_URL / PIER_TOKEN, then the file `pier login` writes,
 * then the admin file `pier up` leaves in its data folder (so the operator's machine needs no login).
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { ConfigError, PierError } from '../core/errors.js';

export interface Credentials {
  apiUrls: string[];
  token: string;
  /** Where they came from, for messages. */
  source: string;
}

export function loginFile(env: NodeJS.ProcessEnv): string {
  const base = env.XDG_CONFIG_HOME || join(homedir(), '.config');
  return join(base, 'pier', 'credentials.json');
}

/** The admin credentials `pier up` writes into its data folder. */
export function adminFile(dataDir: string): string {
  return join(dataDir, 'admin.json');
}

function readCredentialFile(file: string): Partial<Credentials> | undefined {
  if (!existsSync(file)) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    throw new ConfigError(`credentials file '${file}' is not valid JSON; run 'pier login' again`);
  }
  const value = parsed as { apiUrls?: unknown; token?: unknown };
  const apiUrls = Array.isArray(value.apiUrls) && value.apiUrls.every((u) => typeof u === 'string') ? (value.apiUrls as string[]) : undefined;
  const token = typeof value.token === 'string' ? value.token : undefined;
  if (!apiUrls || !token) throw new ConfigError(`credentials file '${file}' needs "apiUrls" and "token"; run 'pier login' again`);
  return { apiUrls, token, source: file };
}

export function resolveCredentials(env: NodeJS.ProcessEnv, dataDir: string): Credentials {
  const fromFile = readCredentialFile(loginFile(env)) ?? readCredentialFile(adminFile(dataDir));
  const envUrls = env.PIER_API_URL?.split(',').map((u) => u.trim()).filter(Boolean);
  const apiUrls = envUrls && envUrls.length > 0 ? envUrls : fromFile?.apiUrls;
  const token = env.PIER_TOKEN || fromFile?.token;
  if (!apiUrls || !token) {
    throw new PierError('PIER_UNAUTHORIZED', "not logged in: run 'pier login URL --token T', set PIER_API_URL and PIER_TOKEN, or run 'pier up' on this machine");
  }
  for (const url of apiUrls) {
    if (!/^https?:\/\/[^/\s]+/.test(url)) throw new ConfigError(`API URL '${url}' must start with http:// or https://`);
  }
  return { apiUrls, token, source: env.PIER_TOKEN ? 'PIER_TOKEN' : fromFile!.source! };
}

export function saveLogin(env: NodeJS.ProcessEnv, credentials: { apiUrls: string[]; token: string }): string {
  const file = loginFile(env);
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  writeFileAtomic(file, `${JSON.stringify({ apiUrls: credentials.apiUrls, token: credentials.token }, null, 2)}\n`);
  return file;
}

/**
 * Puts a new token into the credentials file the CLI read it from (login file or `pier up`'s admin.json), keeping
 * its other fields; written to a temp file beside it and renamed, so no reader ever sees half a file.
 */
export function replaceStoredToken(file: string, token: string): void {
  const current = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  writeFileAtomic(file, `${JSON.stringify({ ...current, token }, null, 2)}\n`, statSync(file).mode & 0o777);
}

/** Writes `text` to `file` through a private temp file in the same folder, flushed, then renamed over it. */
function writeFileAtomic(file: string, text: string, mode = 0o600): void {
  const temp = join(dirname(file), `.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(temp, 'wx', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(temp, { force: true });
    throw err;
  }
  closeSync(fd);
  try {
    chmodSync(temp, mode & 0o600); // a token file is never readable by group or others
    renameSync(temp, file);
  } catch (err) {
    rmSync(temp, { force: true });
    throw err;
  }
}
