/** What every command needs: the environment, credentials, the API client, the app name, the data folder. */
import { defaultDataDir } from '../config/paths.js';
import { PierError, ValidationError } from '../core/errors.js';
import { APP_NAME_PATTERN, PATTERN_HINTS } from '../protocol/patterns.js';
import { ApiClient } from './client.js';
import { resolveCredentials, type Credentials } from './credentials.js';

export interface AppOption {
  app?: string;
}

export class CliContext {
  private client: ApiClient | undefined;
  private found: Credentials | undefined;

  constructor(readonly env: NodeJS.ProcessEnv) {}

  /** The data folder of `pier up` on this machine (PIER_DATA, else the default). */
  dataDir(flag?: string): string {
    return flag ?? defaultDataDir(this.env);
  }

  /** The API URLs and token this CLI uses, and where they came from (PIER_TOKEN or a credentials file). */
  credentials(): Credentials {
    this.found ??= resolveCredentials(this.env, this.dataDir());
    return this.found;
  }

  api(): ApiClient {
    this.client ??= new ApiClient(this.credentials());
    return this.client;
  }

  /** The app from -a/--app or PIER_APP, checked against the naming rule before any request. */
  app(options: AppOption): string {
    const name = options.app ?? this.env.PIER_APP;
    if (!name) throw new PierError('PIER_VALIDATION', 'no app given; use -a APP or set PIER_APP');
    return checkAppName(name);
  }

  async close(): Promise<void> {
    await this.client?.close();
  }
}

export function checkAppName(name: string, what = 'app name'): string {
  if (!new RegExp(APP_NAME_PATTERN).test(name)) throw new ValidationError(`${what} '${name}' ${PATTERN_HINTS[APP_NAME_PATTERN]}`);
  return name;
}

/** URL path segment for a name, escaped. */
export function seg(value: string): string {
  return encodeURIComponent(value);
}
