/**
 * One-offs (`pier run`) on this runner. It keeps one DEALER to every nexus's sessions ROUTER (a DEALER to many
 * endpoints would round-robin, and a session belongs to the nexus that holds its client), says hello on each every
 * heartbeat interval (with the sessions it runs), and runs what a nexus starts: in the app's release, as the app's
 * user, with the release's virtualenv and config vars, a HOME/TMPDIR of its own and cgroups of its own.
 *
 * Only a nexus can start anything here: with CURVE the DEALER pins the nexus's server key, so only a holder of
 * the server secret key (a nexus machine) can speak on it. Output is sent only against credit the client granted
 * (the streams are paused at zero), input is acknowledged once the process took it; so neither side buffers more
 * than a window. A nexus that stops answering hellos ends its attached sessions (hang-up, SIGKILL after the grace).
 */
import { mkdir, chown } from 'node:fs/promises';
import { join } from 'node:path';
import type * as zmq from 'zeromq';
import type { Logger } from 'pino';
import { toPierError } from '../core/errors.js';
import {
  decodeToRunner, encode, MAX_LOG_LINE_CHARS, OUTPUT_WINDOW_BYTES, SESSION_CHUNK_BYTES, type InstanceSpec, type LogMessage, type OneOffSpec, type ToNexusMessage, type ToRunnerMessage,
} from '../protocol/index.js';
import { closeQuietly, isClosedError, SerialSender, type IntakePusher, type SocketFactory } from '../transport/index.js';
import type { AppUser, AppUsers } from './app-users.js';
import { removeOwnedEntry } from './app-files.js';
import type { Cgroups, InstanceLimits } from './cgroups.js';
import type { ReleaseCache } from './release-cache.js';
import { OneOffProcess, type OneOffExit } from './one-off-process.js';

export interface OneOffsOptions {
  runnerId: string;
  /** Sessions endpoint of every nexus that has one. */
  endpoints: readonly string[];
  sockets: SocketFactory;
  releases: ReleaseCache;
  appUsers?: AppUsers | undefined;
  homesDir?: string | undefined;
  cgroups?: Cgroups | undefined;
  limits: InstanceLimits;
  /** Hang-up to SIGKILL. */
  graceMs: number;
  /** Hello interval; a nexus silent for `deadAfterMs` is gone. */
  helloIntervalMs: number;
  deadAfterMs: number;
  pusher?: Pick<IntakePusher, 'push'> | undefined;
  beforeStart?: ((app: string, user: AppUser | undefined) => Promise<void>) | undefined;
  log: Logger;
}

interface Link {
  endpoint: string;
  socket: zmq.Dealer;
  sender: SerialSender;
  lastWelcomeAt: number;
  loop: Promise<void>;
}

interface Session {
  id: string;
  spec: OneOffSpec;
  link: Link;
  proc?: OneOffProcess;
  credit: number;
  isPaused: boolean;
  isEnding: boolean;
  timer?: NodeJS.Timeout;
  /** Detached: partial log lines per stream. */
  partial: [string, string];
  pendingSignals: Array<() => void>;
}

/** After the command ends, its output pipes get this long of silence to close (a leftover child may hold them). */
const OUTPUT_SETTLE_MS = 500;

export class OneOffs {
  private readonly links: Link[] = [];
  private readonly sessions = new Map<string, Session>();
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  private isClosed = false;

  constructor(private readonly options: OneOffsOptions) {
    this.log = options.log.child({ component: 'runner.one-offs' });
  }

  /** Sessions running here (for tests and hellos). */
  get running(): string[] {
    return [...this.sessions.keys()];
  }

  start(): void {
    for (const endpoint of this.options.endpoints) {
      const socket = this.options.sockets.dealer(1000);
      socket.connect(endpoint);
      const link = { endpoint, socket, sender: new SerialSender(socket), lastWelcomeAt: 0, loop: Promise.resolve() } as Link;
      link.loop = this.receive(link);
      this.links.push(link);
    }
    this.hello();
    this.timer = setInterval(() => this.tick(), this.options.helloIntervalMs);
  }

  private tick(): void {
    this.hello();
    const now = Date.now();
    for (const session of this.sessions.values()) {
      if (!session.spec.detach && !session.isEnding && now - session.link.lastWelcomeAt > this.options.deadAfterMs) {
        this.log.warn({ session: session.id, endpoint: session.link.endpoint }, 'nexus of a one-off lost; hanging up');
        this.hangup(session);
      }
    }
  }

  private hello(): void {
    const running = this.running;
    for (const link of this.links) this.send(link, { v: 1, type: 'session.hello', nodeId: this.options.runnerId, running });
  }

  private send(link: Link, message: ToNexusMessage): Promise<void> {
    const payload = encode(message);
    const proof = this.options.sockets.proof(payload);
    return link.sender.send(proof ? [proof, payload] : [payload]);
  }

  private async receive(link: Link): Promise<void> {
    try {
      for await (const frames of link.socket) {
        let message: ToRunnerMessage;
        try {
          message = decodeToRunner(frames[frames.length - 1]!, this.options.sockets.maxMessageBytes);
        } catch (err) {
          this.log.warn({ endpoint: link.endpoint, err: (err as Error).message }, 'invalid session message');
          continue;
        }
        link.lastWelcomeAt = Date.now();
        this.handle(link, message);
      }
    } catch (err) {
      if (!isClosedError(err) && !link.socket.closed) this.log.error({ err }, 'session loop failed');
    }
  }

  private handle(link: Link, message: ToRunnerMessage): void {
    if (message.type === 'session.welcome') return;
    if (message.type === 'session.start') {
      if (this.sessions.has(message.session) || this.isClosed) return;
      void this.startSession(link, message.session, message.spec);
      return;
    }
    const session = this.sessions.get(message.session);
    if (!session) return;
    const act = (fn: (proc: OneOffProcess) => void): void => {
      if (session.proc) fn(session.proc);
      else session.pendingSignals.push(() => session.proc && fn(session.proc));
    };
    switch (message.type) {
      case 'session.in':
        act((proc) => {
          const bytes = message.data.byteLength;
          if (!proc.stdin || proc.stdin.destroyed) return void this.send(session.link, { v: 1, type: 'session.credit', session: session.id, bytes });
          proc.stdin.write(Buffer.from(message.data), () => void this.send(session.link, { v: 1, type: 'session.credit', session: session.id, bytes }));
        });
        break;
      case 'session.eof':
        act((proc) => proc.stdin?.end());
        break;
      case 'session.resize':
        act((proc) => proc.resize(message.rows, message.cols));
        break;
      case 'session.signal':
        act((proc) => proc.signal(message.signal));
        break;
      case 'session.credit':
        session.credit += message.bytes;
        if (session.credit > 0 && session.isPaused && session.proc) {
          session.isPaused = false;
          session.proc.stdout.resume();
          session.proc.stderr.resume();
        }
        break;
      case 'session.hangup':
        this.hangup(session);
        break;
      case 'session.stop':
        act((proc) => {
          proc.signal('SIGTERM');
          setTimeout(() => proc.kill(), this.options.graceMs).unref();
        });
        break;
    }
  }

  private hangup(session: Session): void {
    session.isEnding = true;
    if (!session.proc) return;
    session.proc.hangup();
    // The helper kills after the grace; if it does not answer, the runner does.
    setTimeout(() => session.proc?.kill(), this.options.graceMs + 1000).unref();
  }

  private async startSession(link: Link, id: string, spec: OneOffSpec): Promise<void> {
    const session: Session = { id, spec, link, credit: OUTPUT_WINDOW_BYTES, isPaused: false, isEnding: false, partial: ['', ''], pendingSignals: [] };
    this.sessions.set(id, session);
    const { cgroups, appUsers, homesDir } = this.options;
    const cgroupName = `run-${id}`;
    let home: string | undefined;
    let exit: OneOffExit;
    try {
      const user = appUsers ? await appUsers.ensure(spec.app) : undefined;
      await this.options.beforeStart?.(spec.app, user);
      const release = await this.options.releases.prepare(instanceSpecOf(id, spec, this.options.runnerId), user);
      if (spec.type !== undefined) {
        const types = [...(release.wsgi ? ['web'] : []), ...Object.keys(release.processes ?? {})];
        if (!types.includes(spec.type)) throw new OneOffRefused(`unknown process type '${spec.type}'; v${spec.release} of '${spec.app}' has ${types.length > 0 ? types.map((t) => `'${t}'`).join(', ') : 'none'}`);
      }
      const env: Record<string, string> = {
        PATH: `${join(release.venvDir, 'bin')}:/usr/local/bin:/usr/bin:/bin`, LANG: 'C.UTF-8', VIRTUAL_ENV: release.venvDir, PYTHONUNBUFFERED: '1',
      };
      if (user && homesDir) {
        await mkdir(homesDir, { recursive: true, mode: 0o711 });
        home = join(homesDir, cgroupName);
        await mkdir(home, { mode: 0o700 });
        await chown(home, user.uid, user.gid);
        Object.assign(env, { HOME: home, TMPDIR: home });
      }
      Object.assign(env, spec.config, { DYNO: spec.dyno }, spec.pty ? { TERM: spec.pty.term } : {});
      const limits: InstanceLimits = { ...this.options.limits, ...spec.limits };
      const cgroupDirs = cgroups ? await cgroups.create(cgroupName, limits) : undefined;
      if (session.isEnding) throw new OneOffRefused('the one-off was stopped before it started');
      const proc = await OneOffProcess.start({
        argv: spec.command, env, cwd: release.appDir, user, pty: spec.pty ? { rows: spec.pty.rows, cols: spec.pty.cols } : null,
        hasStdin: !spec.detach, cgroupDirs, openFiles: limits.openFiles, graceMs: this.options.graceMs,
      });
      session.proc = proc;
      this.log.info({ session: id, appId: spec.app, dyno: spec.dyno, pid: proc.pid, isPty: spec.pty !== null, isDetached: spec.detach }, 'one-off started');
      void this.send(link, { v: 1, type: 'session.started', session: id });
      for (const pending of session.pendingSignals.splice(0)) pending();
      if (session.isEnding) this.hangup(session);
      session.timer = setTimeout(() => {
        this.log.info({ session: id, timeoutMs: spec.timeoutMs }, 'one-off reached its time limit');
        this.emitLine(session, 2, `pier: ${spec.dyno} reached its time limit (${Math.round(spec.timeoutMs / 1000)} s) and was stopped`);
        this.hangup(session);
      }, spec.timeoutMs);
      exit = await this.pump(session, proc);
    } catch (err) {
      const message = err instanceof OneOffRefused ? err.message : `the one-off could not start: ${toPierError(err).message === 'internal error' ? (err as Error).message : toPierError(err).message}`;
      if (!(err instanceof OneOffRefused)) this.log.warn({ session: id, err }, 'one-off failed to start');
      exit = { code: null, signal: null, error: message };
    }
    clearTimeout(session.timer);
    session.proc?.kill();
    this.flushPartial(session);
    // A detached one-off outlives its nexus: any nexus that still answers records its end. The end is told first
    // (the client is waiting on it); the clean-up below kills whatever the one-off left and removes its HOME.
    const to = spec.detach ? (this.links.find((l) => Date.now() - l.lastWelcomeAt < this.options.deadAfterMs) ?? link) : link;
    void this.send(to, { v: 1, type: 'session.exit', session: id, code: exit.code, signal: exit.signal, ...(exit.error ? { error: exit.error.slice(0, 4000) } : {}) });
    if (cgroups) await cgroups.remove(cgroupName).catch((err) => this.log.warn({ err, session: id }, 'cannot remove the cgroups of a one-off'));
    if (home) await removeOwnedEntry(home).catch(() => undefined);
    this.sessions.delete(id);
    this.log.info({ session: id, dyno: spec.dyno, code: exit.code, signal: exit.signal }, 'one-off ended');
  }

  /** Relays output until the command has ended and its pipes are closed (or silent for OUTPUT_SETTLE_MS). */
  private async pump(session: Session, proc: OneOffProcess): Promise<OneOffExit> {
    let lastOutputAt = Date.now();
    const streams = [proc.stdout, proc.stderr] as const;
    const open = new Set<number>([1, 2]);
    let wake: () => void = () => undefined;
    streams.forEach((stream, index) => {
      const number = (index + 1) as 1 | 2;
      stream.on('data', (chunk: Buffer) => {
        lastOutputAt = Date.now();
        for (let at = 0; at < chunk.length; at += SESSION_CHUNK_BYTES) this.output(session, number, chunk.subarray(at, at + SESSION_CHUNK_BYTES));
      });
      stream.once('close', () => {
        open.delete(number);
        wake();
      });
      stream.on('error', () => undefined);
    });
    const exit = await proc.exited;
    while (open.size > 0) {
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, OUTPUT_SETTLE_MS).unref();
      });
      if (open.size > 0 && !session.isPaused && Date.now() - lastOutputAt >= OUTPUT_SETTLE_MS) break;
      if (this.isClosed) break;
    }
    return exit;
  }

  private output(session: Session, stream: 1 | 2, data: Buffer): void {
    if (session.spec.detach) {
      const text = session.partial[stream - 1] + data.toString('utf8');
      const lines = text.split('\n');
      session.partial[stream - 1] = lines.pop()!;
      for (const line of lines) this.emitLine(session, stream, line);
      return;
    }
    void this.send(session.link, { v: 1, type: 'session.out', session: session.id, stream, data });
    session.credit -= data.byteLength;
    if (session.credit <= 0 && !session.isPaused && session.proc) {
      session.isPaused = true;
      session.proc.stdout.pause();
      session.proc.stderr.pause();
    }
  }

  /** A line of a one-off's own output (detached: to the app's log) or a line from Pier about it. */
  private emitLine(session: Session, stream: 1 | 2, line: string): void {
    if (!session.spec.detach) {
      void this.send(session.link, { v: 1, type: 'session.out', session: session.id, stream, data: Buffer.from(`${line}${session.spec.pty ? '\r\n' : '\n'}`) });
      return;
    }
    const clean = line.replace(/\r$/, '');
    if (clean === '') return;
    const message: LogMessage = { v: 1, type: 'log', app: session.spec.app, source: 'app', origin: session.spec.dyno, line: clean.slice(0, MAX_LOG_LINE_CHARS), at: Date.now() };
    this.options.pusher?.push(message);
  }

  private flushPartial(session: Session): void {
    if (!session.spec.detach) return;
    session.partial.forEach((rest, index) => rest && this.emitLine(session, (index + 1) as 1 | 2, rest));
    session.partial = ['', ''];
  }

  /** Hangs up every session, waits up to the grace for them to end, then closes the sockets. */
  async close(): Promise<void> {
    this.isClosed = true;
    clearInterval(this.timer);
    const ending = [...this.sessions.values()];
    for (const session of ending) this.hangup(session);
    const deadline = Date.now() + this.options.graceMs + 1500;
    while (this.sessions.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    await Promise.race([Promise.all(this.links.map((l) => l.sender.drain())), new Promise((resolve) => setTimeout(resolve, 500))]);
    for (const link of this.links) closeQuietly(link.socket);
    await Promise.all(this.links.map((l) => l.loop));
  }
}

/** A one-off the runner refuses for a reason its owner can fix (the message says which). */
class OneOffRefused extends Error {}

function instanceSpecOf(id: string, spec: OneOffSpec, runnerId: string): InstanceSpec {
  return {
    instanceId: `run-${id}`, app: spec.app, release: spec.release, sha256: spec.sha256, sizeBytes: spec.sizeBytes, processType: 'run',
    config: spec.config, runnerId, state: 'starting', ...(spec.limits ? { limits: spec.limits } : {}),
  };
}
