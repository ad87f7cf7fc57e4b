/**
 * Where the CLI finds the API and a token: PIER_API_URL / PIER_TOKEN, then the file `pier login` writes,
 * then the admin file `pier up` leaves in its data folder (so the operator's machine needs no login).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
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
  writeFileSync(file, `${JSON.stringify({ apiUrls: credentials.apiUrls, token: credentials.token }, null, 2)}\n`, { mode: 0o600 });
  return file;
}
