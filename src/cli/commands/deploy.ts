/** pier deploy [DIR]: pack the app folder, upload it as a new release, and follow the deploy until it is live. */
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { PierError, ValidationError } from '../../core/errors.js';
import { sleep } from '../../core/wait.js';
import type { Instance, Release } from '../../protocol/common.js';
import { seg, type CliContext } from '../context.js';
import { print } from '../output.js';
import { action, appOption } from './shared.js';

interface DeployOptions {
  app?: string;
  /** False with --no-wait: refuse at once when another deploy holds the app's lock. */
  wait?: boolean;
  /** --detach: return once the release is recorded, without following the deploy. */
  detach?: boolean;
  timeout: string;
  stage?: boolean;
  rolling?: boolean;
}

/** Seconds one API call waits for another deploy's lock before the CLI asks again (and says who holds it). */
const LOCK_WAIT_SECONDS = 20;

/**
 * Runs a deploy call; while another deploy holds the app's lock it says who, and waits (until `timeoutMs`),
 * unless --no-wait was given: then the holder's name is the error.
 */
async function underDeployLock<T>(opts: DeployOptions, timeoutMs: number, call: (headers: Record<string, string>) => Promise<T>): Promise<T> {
  if (opts.wait === false) return call({});
  const deadline = Date.now() + timeoutMs;
  let said = '';
  for (;;) {
    try {
      return await call({ 'pier-lock-wait': String(LOCK_WAIT_SECONDS) });
    } catch (err) {
      if ((err as PierError).code !== 'PIER_LOCKED' || Date.now() > deadline) throw err;
      const message = (err as PierError).message.replace(/ \(token \d+, lease ends in \d+ s\)$/, '');
      if (message !== said) print(`-----> Waiting: ${message}`);
      said = message;
    }
  }
}

export function registerDeployCommand(program: Command, ctx: CliContext): void {
  appOption(
    program
      .command('deploy')
      .description('upload DIR (default: .) as a new release and deploy it')
      .argument('[dir]', 'app folder with wsgi.py or a Procfile', '.')
      .option('--stage', 'put the release on stage.<app>.<domain> instead of live; pier promote makes it live')
      .option('--rolling', 'replace instances runner by runner (no second full set), stopping at the first that fails')
      .option('--no-wait', 'fail at once when another deploy of the app is running, instead of waiting for it')
      .option('--detach', 'return once the release is uploaded, without following the deploy')
      .option('--timeout <seconds>', 'give up waiting after this long', '600'),
  ).action(
    action(ctx, async (dir: string, opts: DeployOptions) => {
      const app = ctx.app(opts);
      const timeoutMs = parseTimeout(opts.timeout);
      const folder = resolve(dir);
      if (!existsSync(folder) || !statSync(folder).isDirectory()) throw new ValidationError(`'${dir}' is not a folder`);
      // Load the packing code only here: the rest of the CLI does not need it.
      const { detectApp } = await import('../../runner/app-detect.js');
      const { packDirectory, formatBytes } = await import('../../archive/index.js');
      const detected = await detectApp(folder);
      const bytes = await packDirectory(folder);
      print(`-----> Packed ${dir} (${formatBytes(bytes.length)}, ${detected.wsgi ? `${detected.wsgi.module}:${detected.wsgi.callable}` : Object.keys(detected.processes).join(', ')})`);
      const started = Date.now();
      const { release } = await underDeployLock(opts, timeoutMs, (headers) =>
        ctx.api().upload<{ release: Release }>(`/v1/apps/${seg(app)}/releases${opts.stage ? '?stage=1' : opts.rolling ? '?strategy=rolling' : ''}`, bytes, 'application/gzip', headers));
      print(`-----> Uploaded release v${release.version} (sha256 ${release.sha256.slice(0, 12)}) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      if (opts.detach) return;
      await follow(ctx, app, release.version, timeoutMs, started, opts.stage === true);
    }),
  );

  appOption(
    program
      .command('promote')
      .description('make the release on stage live (blue/green from its warm instance); the live one takes the stage slot')
      .option('--no-wait', 'fail at once when another deploy of the app is running, instead of waiting for it')
      .option('--detach', 'return once the promotion is recorded')
      .option('--timeout <seconds>', 'give up waiting after this long', '600'),
  ).action(
    action(ctx, async (opts: DeployOptions) => {
      const app = ctx.app(opts);
      const timeoutMs = parseTimeout(opts.timeout);
      const started = Date.now();
      const { release } = await underDeployLock(opts, timeoutMs, (headers) => ctx.api().post<{ release: Release }>(`/v1/apps/${seg(app)}/promote`, {}, headers));
      print(`-----> Promoting v${release.version} from stage`);
      if (opts.detach) return;
      await follow(ctx, app, release.version, timeoutMs, started);
    }),
  );

  appOption(
    program
      .command('rollback')
      .description('deploy an earlier release again, code and config vars (default: the previous good release)')
      .argument('[version]', 'the release to go back to, e.g. v3')
      .option('--no-wait', 'fail at once when another deploy of the app is running, instead of waiting for it')
      .option('--detach', 'return once the rollback release is created')
      .option('--timeout <seconds>', 'give up waiting after this long', '600'),
  ).action(
    action(ctx, async (version: string | undefined, opts: DeployOptions) => {
      const app = ctx.app(opts);
      const timeoutMs = parseTimeout(opts.timeout);
      let target: number | undefined;
      if (version !== undefined) {
        const match = /^v?([1-9]\d{0,8})$/.exec(version);
        if (!match) throw new ValidationError(`'${version}' is not a release version like v3`);
        target = Number(match[1]);
      }
      const started = Date.now();
      const { release } = await underDeployLock(opts, timeoutMs, (headers) =>
        ctx.api().post<{ release: Release }>(`/v1/apps/${seg(app)}/rollback`, target === undefined ? {} : { version: target }, headers));
      print(`-----> ${release.description}: release v${release.version}`);
      if (opts.detach) return;
      await follow(ctx, app, release.version, timeoutMs, started);
    }),
  );
}

function parseTimeout(value: string): number {
  const timeoutMs = Number(value) * 1000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new ValidationError(`--timeout must be a number of seconds, not '${value}'`);
  return timeoutMs;
}

/** Prints each step of the deploy as it happens; throws when it fails or times out. */
async function follow(ctx: CliContext, app: string, version: number, timeoutMs: number, started = Date.now(), isStage = false): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const said = new Set<string>();
  const say = (key: string, line: string): void => {
    if (said.has(key)) return;
    said.add(key);
    print(line);
  };
  for (;;) {
    const { release, instances, url, stageUrl, verdict } = await ctx.api().get<{
      release: Release; instances: Instance[]; url: string; stageUrl: string; verdict: { until: number } | null;
    }>(
      `/v1/apps/${seg(app)}/releases/v${version}`,
    );
    if (instances.length > 0) say('build', `-----> Building on ${[...new Set(instances.map((i) => i.runnerId))].join(', ')} (unpack, virtualenv)`);
    for (const i of instances) {
      if (i.state === 'starting') say(`start ${i.id}`, `-----> Starting ${i.id} on ${i.host}:${i.port}`);
      if (i.state === 'ready') say(`ready ${i.id}`, `-----> ${i.id} is ready`);
    }
    if (isStage && release.status === 'staged') {
      print(`-----> v${version} is on stage in ${((Date.now() - started) / 1000).toFixed(1)} s: ${stageUrl} (make it live: pier promote -a ${app})`);
      return;
    }
    if (release.status === 'live') {
      say('live', `-----> v${version} is live in ${((Date.now() - started) / 1000).toFixed(1)} s: ${url}`);
      if (!verdict) {
        if (said.has('watching')) print(`-----> Live traffic looks healthy: v${version} stays live`);
        return;
      }
      say('watching', `-----> Watching live traffic for ${Math.max(1, Math.round((verdict.until - Date.now()) / 1000))} s; the previous release stays up to switch back (Ctrl-C leaves it running)`);
    } else if (said.has('live') && release.status === 'failed') {
      print(`-----> Switched back: v${version} ${(release.error ?? 'was reverted').replace(/^reverted by the live-traffic verdict: /, 'was reverted by the live-traffic verdict: ')}`);
      throw new PierError('PIER_ILLEGAL_STATE', `v${version} was reverted: ${(release.error ?? '').replace(/^reverted by the live-traffic verdict: /, '')}`);
    }
    if (release.status === 'failed') {
      print(`-----> v${version} failed; nothing public changed. The app said:`);
      print((release.error ?? 'no output').split('\n').map((line) => `       ${line}`).join('\n'));
      throw new PierError('PIER_ILLEGAL_STATE', `deploy of v${version} failed: ${(release.error ?? 'unknown error').split('\n')[0]}`);
    }
    if (release.status === 'superseded') {
      print(`-----> v${version} was superseded by a newer release before it went live`);
      return;
    }
    if (Date.now() > deadline) {
      throw new PierError('PIER_TIMEOUT', `v${version} is not live after ${Math.round(timeoutMs / 1000)} s; see 'pier ps -a ${app}' and 'pier releases -a ${app}'`);
    }
    if (Date.now() - started > 5000 && instances.length === 0) say('waiting', '-----> Waiting for a runner to take it (is a runner up? see pier status)');
    await sleep(250);
  }
}
