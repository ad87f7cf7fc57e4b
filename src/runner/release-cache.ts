/**
 * Prepares releases on this runner, once per artifact: fetches the artifact over the control protocol in chunks
 * (cached by sha256 and checked), unpacks it safely, detects the WSGI entry point, builds the virtualenv and runs
 * the Procfile's `build:` command (build-phase.ts). A config change (same artifact) reuses the prepared release.
 * Concurrent instances of one release share one preparation.
 *
 * With an app user (the runner is root), `releases/<app>/` is root's and readable by the app's group only (0750),
 * the unpacked app root's and read-only, and the virtualenv is built by the app's user and then frozen into a tree
 * of root's (see venv.ts): the app can read its release but change nothing in it.
 */
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { chmod, chown, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { PierError } from '../core/errors.js';
import { MAX_ARTIFACT_CHUNK_BYTES, type InstanceSpec } from '../protocol/index.js';
import type { ControlClient } from '../transport/index.js';
import { extractArchive } from '../archive/index.js';
import { detectApp, type WsgiEntry } from './app-detect.js';
import type { StaticMount } from './static-map.js';
import { buildVirtualenv } from './venv.js';
import { runBuildPhase } from './build-phase.js';
import type { BuildUser } from './app-tree.js';

export interface PreparedRelease {
  /** Unpacked app folder (the vassal's chdir). */
  appDir: string;
  venvDir: string;
  /** The web app; null when the release has only background process types. */
  wsgi: WsgiEntry | null;
  /** Background process types and their commands (Procfile order). Absent from a release prepared by an older runner. */
  processes?: Record<string, string>;
  /** The Procfile's `build:` command (already run into appDir), if any. */
  build?: string | null;
  /** The Procfile's `release:` command (the release phase), if any. */
  release?: string | null;
  /** The Procfile's `static:` mounts (folders relative to appDir), if any. */
  static?: StaticMount[];
}

/** What a preparation reports as it goes. */
export interface PrepareHooks {
  /** Each line the build (virtualenv, pip, the `build:` command) prints. */
  onBuildOutput?: (line: string) => void;
}

export interface ReleaseCacheOptions {
  dir: string;
  control: ControlClient;
  pipArgs: readonly string[];
  buildTimeoutMs: number;
  log: Logger;
}

export class ReleaseCache {
  private readonly inFlight = new Map<string, Promise<PreparedRelease>>();

  constructor(private readonly options: ReleaseCacheOptions) {
    // Artifacts hold every app's code: root's only (apps run as their own users).
    mkdirSync(join(options.dir, 'artifacts'), { recursive: true, mode: 0o700 });
    chmodSync(join(options.dir, 'artifacts'), 0o700);
    // Apps walk through to their own release folder (0750, their group) but cannot list which apps run here.
    mkdirSync(join(options.dir, 'releases'), { recursive: true, mode: 0o711 });
    chmodSync(join(options.dir, 'releases'), 0o711);
  }

  /** The release of `spec`, built (as `user`, the app's, when given) unless already prepared. */
  prepare(spec: InstanceSpec, user?: BuildUser, hooks: PrepareHooks = {}): Promise<PreparedRelease> {
    const key = `${spec.app}/${spec.sha256}`;
    let job = this.inFlight.get(key);
    if (!job) {
      job = this.build(spec, user, hooks).finally(() => this.inFlight.delete(key));
      this.inFlight.set(key, job);
    }
    return job;
  }

  private async build(spec: InstanceSpec, user: BuildUser | undefined, hooks: PrepareHooks): Promise<PreparedRelease> {
    const appReleases = join(this.options.dir, 'releases', spec.app);
    const releaseDir = join(appReleases, spec.sha256.slice(0, 16));
    if (user) {
      await mkdir(appReleases, { recursive: true, mode: 0o750 });
      await chown(appReleases, 0, user.gid);
      await chmod(appReleases, 0o750);
    }
    const marker = join(releaseDir, 'release.json');
    if (existsSync(marker)) return JSON.parse(readFileSync(marker, 'utf8')) as PreparedRelease;
    const started = Date.now();
    const bytes = await this.artifact(spec.sha256, spec.sizeBytes);
    const appDir = join(releaseDir, 'app');
    // A half-prepared release (a runner killed mid-build) is unpacked again from scratch.
    await extractArchive(bytes, appDir, {}, { replace: true });
    const detected = await detectApp(appDir);
    const venvDir = join(releaseDir, 'venv');
    const onOutput = hooks.onBuildOutput;
    await buildVirtualenv({ appDir, venvDir, pipArgs: [...this.options.pipArgs], log: this.options.log, timeoutMs: this.options.buildTimeoutMs, ...(user ? { user } : {}), ...(onOutput ? { onOutput } : {}) });
    if (detected.build) {
      await runBuildPhase({ releaseDir, command: detected.build, config: spec.config, timeoutMs: this.options.buildTimeoutMs, ...(user ? { user } : {}), ...(onOutput ? { onOutput } : {}) });
    }
    const prepared: PreparedRelease = { appDir, venvDir, wsgi: detected.wsgi, processes: detected.processes, build: detected.build, release: detected.release, ...(detected.static ? { static: detected.static } : {}) };
    writeFileSync(`${marker}.tmp`, JSON.stringify(prepared));
    renameSync(`${marker}.tmp`, marker);
    this.options.log.info({ appId: spec.app, release: spec.release, durationMs: Date.now() - started }, 'release prepared');
    return prepared;
  }

  /** The artifact bytes, from the cache or fetched in chunks; the sha256 is checked either way. */
  private async artifact(sha256: string, sizeBytes: number): Promise<Buffer> {
    const file = join(this.options.dir, 'artifacts', `${sha256}.tar.gz`);
    if (existsSync(file)) {
      const cached = readFileSync(file);
      if (hash(cached) === sha256) return cached;
    }
    const chunks: Buffer[] = [];
    let offset = 0;
    while (offset < sizeBytes) {
      const length = Math.min(MAX_ARTIFACT_CHUNK_BYTES / 2, sizeBytes - offset);
      const { data } = await this.options.control.call('artifact.fetch', { sha256, offset, length }, { timeoutMs: 10_000 });
      if (data.byteLength === 0) break;
      chunks.push(Buffer.from(data));
      offset += data.byteLength;
    }
    const bytes = Buffer.concat(chunks);
    if (hash(bytes) !== sha256) throw new PierError('PIER_PROTOCOL', `artifact ${sha256.slice(0, 12)} arrived corrupted (sha256 mismatch)`);
    writeFileSync(`${file}.tmp`, bytes);
    renameSync(`${file}.tmp`, file);
    return bytes;
  }
}

function hash(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
