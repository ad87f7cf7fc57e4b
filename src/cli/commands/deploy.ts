/** pier deploy [DIR]: pack the app folder, upload it as a new release, and follow the deploy until it is live. */
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { PierError, ValidationError } from '../../core/errors.js';
import { sleep } from '../../core/wait.js';
import type { Release } from '../../protocol/common.js';
import { seg, type CliContext } from '../context.js';
import { print } from '../output.js';
import { action, appOption } from './shared.js';

/** One step of a deploy (see GET /v1/apps/:app/deploys/vN). */
interface DeployStep {
  version: number;
  step: string;
  detail: string;
  instance?: string;
  runnerId?: string;
  processType?: string;
  lines?: string[];
  reason?: string;
}

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
      const holder = (err as PierError).details?.holder;
      const message = typeof holder === 'string' ? `the deploy lock is held by ${holder}` : (err as PierError).message;
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

/** `GET /v1/apps/:app/deploys/vN`: the deploy, its structured steps, and where it is served. */
interface DeployView {
  id: number;
  release: Release;
  steps: DeployStep[];
  errorLine: string | null;
  url: string;
  stageUrl: string;
  verdict: { until: number } | null;
}

/**
 * Follows `GET /v1/apps/:app/deploys/vN`, printing each new step once (by its event version) — build and release
 * phase output as it comes — until the deploy settles. A failed or reverted deploy throws PIER_DEPLOY_FAILED with
 * the app's last error line.
 */
async function follow(ctx: CliContext, app: string, version: number, timeoutMs: number, started = Date.now(), isStage = false): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const said = new Set<string>();
  const say = (key: string, line: string): void => {
    if (said.has(key)) return;
    said.add(key);
    print(line);
  };
  let seen = 0;
  for (;;) {
    const { deploy } = await ctx.api().get<{ deploy: DeployView }>(`/v1/apps/${seg(app)}/deploys/v${version}`);
    const { release } = deploy;
    for (const step of deploy.steps) {
      if (step.version <= seen) continue;
      seen = step.version;
      printStep(step, say);
    }
    if (isStage && release.status === 'staged') {
      print(`-----> v${version} is on stage in ${((Date.now() - started) / 1000).toFixed(1)} s: ${deploy.stageUrl} (make it live: pier promote -a ${app})`);
      return;
    }
    if (release.status === 'live') {
      say('live', `-----> v${version} is live in ${((Date.now() - started) / 1000).toFixed(1)} s: ${deploy.url}`);
      if (!deploy.verdict) {
        if (said.has('watching')) print(`-----> Live traffic looks healthy: v${version} stays live`);
        return;
      }
      say('watching', `-----> Watching live traffic for ${Math.max(1, Math.round((deploy.verdict.until - Date.now()) / 1000))} s; the previous release stays up to switch back (Ctrl-C leaves it running)`);
    } else if (release.status === 'failed') {
      const line = deploy.errorLine ?? 'unknown error';
      const reverted = deploy.steps.find((s) => s.step === 'reverted');
      if (reverted) {
        const reason = reverted.reason ?? line;
        print(`-----> Switched back: v${version} was reverted by the live-traffic verdict: ${reason}`);
        throw new PierError('PIER_DEPLOY_FAILED', `v${version} was reverted: ${reason}`);
      }
      print(`-----> v${version} failed; nothing public changed. The app said:`);
      print((release.error ?? 'no output').split('\n').map((l) => `       ${l}`).join('\n'));
      throw new PierError('PIER_DEPLOY_FAILED', `deploy of v${version} failed: ${line}`);
    }
    if (release.status === 'superseded') {
      print(`-----> v${version} was superseded by a newer release before it went live`);
      return;
    }
    if (Date.now() > deadline) {
      throw new PierError('PIER_TIMEOUT', `v${version} is not live after ${Math.round(timeoutMs / 1000)} s; see 'pier ps -a ${app}' and 'pier releases -a ${app}'`);
    }
    if (Date.now() - started > 5000 && !deploy.steps.some((s) => s.instance !== undefined)) say('waiting', '-----> Waiting for a runner to take it (is a runner up? see pier status)');
    await sleep(250);
  }
}

/** One step of a deploy as the CLI shows it (steps it does not know are skipped: the server may be newer). */
function printStep(step: DeployStep, say: (key: string, line: string) => void): void {
  const isPhase = step.processType === 'release';
  switch (step.step) {
    case 'instance assigned':
      if (isPhase) say(`phase ${step.instance}`, `-----> Release phase on ${step.runnerId} (unpack, virtualenv, then the Procfile's release: command)`);
      else say(`build ${step.runnerId}`, `-----> Building on ${step.runnerId} (unpack, virtualenv, build)`);
      return;
    case 'instance starting':
      if (!isPhase) say(`start ${step.instance}`, `-----> Starting ${step.detail}`);
      return;
    case 'instance ready':
      say(`ready ${step.instance}`, isPhase ? '-----> Release phase done' : `-----> ${step.instance} is ready`);
      return;
    case 'build output':
    case 'release output':
      say(`${step.step} ${step.runnerId}`, `-----> ${step.step === 'build output' ? 'Build' : 'Release phase'} output (${step.runnerId}):`);
      print((step.lines ?? []).map((l) => `       ${l}`).join('\n'));
      return;
    default:
      return;
  }
}
