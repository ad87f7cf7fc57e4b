/**
 * One-offs (`pier run`): `POST /v1/apps/:app/dynos` checks everything and records `run.N` (a detached one starts at
 * once and its answer says where it runs); an attached one starts when its client opens
 * `GET /v1/apps/:app/dynos/run.N/attach` with `Upgrade: pier-session` on any nexus, which then relays the frames.
 * `GET /v1/apps/:app/dynos` lists the running ones; `POST /v1/apps/:app/dynos/run.N/stop` stops one.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { ConflictError, NotFoundError, PierError, ValidationError, httpStatusFor, toPierError } from '../../core/errors.js';
import {
  authenticate, claimOneOff, createOneOff, liveReleaseForRun, listOneOffs, mapDbError, markOneOffExited, oneOffState, resolveApp,
} from '../../db/index.js';
import { AppParams, DynoCreate, MAX_COMMAND_BYTES, SESSION_UPGRADE, type Dyno, type OneOffSpec } from '../../protocol/index.js';
import { principalOf, type ApiContext, type SessionsPort } from '../context.js';
import { relaySession } from '../session-relay.js';

const TYPE = /^[a-z][a-z0-9_-]{0,62}$/;
const TERM = /^[A-Za-z0-9._+-]{1,64}$/;
const DYNO = /^run\.([1-9][0-9]{0,9})$/;
const ATTACH_PATH = /^\/v1\/apps\/([^/?]+)\/dynos\/([^/?]+)\/attach(?:\?.*)?$/;
/** Longest wait for a detached one-off to start (its release may have to be prepared on the runner). */
const DETACH_START_MS = 120_000;

type DynoParams = AppParams & { dyno: string };

export function dynoRoutes(app: FastifyInstance, ctx: ApiContext, log: Logger): void {
  app.post<{ Params: AppParams; Body: DynoCreate }>(
    '/v1/apps/:app/dynos',
    { schema: { params: AppParams, body: DynoCreate } },
    async (request, reply) => {
      const principal = await principalOf(ctx, request);
      const ref = await resolveApp(ctx.pool, principal, request.params.app);
      const body = request.body;
      const spec = checkBody(ctx, body);
      const release = await liveReleaseForRun(ctx.pool, ref);
      if (!release) throw new ConflictError(`app '${ref.name}' has no release yet; deploy one first: pier deploy DIR -a ${ref.name}`);
      const hub = hubOf(ctx);
      const runnerId = hub.pickRunner();
      if (!runnerId) throw noRunner();
      const id = randomUUID();
      const full = { ...spec, app: ref.name, release: release.release, sha256: release.sha256, sizeBytes: release.sizeBytes, config: release.config, ...(release.limits && Object.keys(release.limits).length > 0 ? { limits: release.limits } : {}) };
      const number = await createOneOff(ctx.pool, ref, id, full);
      const name = `run.${number}`;
      if (!spec.detach) {
        reply.code(201);
        return { dyno: { name, state: 'created' }, attach: `/v1/apps/${encodeURIComponent(ref.name)}/dynos/${name}/attach` };
      }
      const claimed = await claimOneOff(ctx.pool, ref, number, runnerId, ctx.nexusId);
      if (!claimed) throw new ConflictError(`${name} of '${ref.name}' was claimed by someone else`);
      await startDetached(hub, id, runnerId, claimed.spec);
      reply.code(201);
      return { dyno: { name, state: 'running', runnerId, command: spec.command.join(' ') } };
    },
  );

  app.get<{ Params: AppParams }>('/v1/apps/:app/dynos', { schema: { params: AppParams } }, async (request): Promise<{ dynos: Dyno[] }> => {
    const ref = await resolveApp(ctx.pool, await principalOf(ctx, request), request.params.app);
    return { dynos: await listOneOffs(ctx.pool, ref) };
  });

  app.post<{ Params: DynoParams }>('/v1/apps/:app/dynos/:dyno/stop', async (request) => {
    const ref = await resolveApp(ctx.pool, await principalOf(ctx, request), request.params.app);
    const number = dynoNumber(request.params.dyno, ref.name);
    const row = await oneOffState(ctx.pool, ref, number);
    if (!row || (row.state !== 'running' && row.state !== 'starting') || !row.runnerId) {
      throw new NotFoundError(`no running one-off '${request.params.dyno}' of '${ref.name}'; run 'pier ps -a ${ref.name}'`);
    }
    if (!hubOf(ctx).stop(row.runnerId, row.id)) {
      await markOneOffExited(ctx.pool, row.id, null); // its runner is gone, and so is the one-off
    }
    return { stopped: request.params.dyno };
  });

  app.server.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
    void attach(ctx, req, socket, log).catch((err) => {
      const e = toPierError(mapDbError(err));
      if (e.code === 'PIER_INTERNAL') log.error({ err, url: req.url }, 'attach failed');
      refuseUpgrade(socket, e.code, e.code === 'PIER_INTERNAL' ? 'internal error' : e.message);
    });
  });
}

/** Checks the body into the parts of a spec that do not depend on the release. @throws ValidationError */
function checkBody(ctx: ApiContext, body: DynoCreate): Pick<OneOffSpec, 'command' | 'pty' | 'detach' | 'timeoutMs' | 'type'> {
  if (body.command.length === 0 || body.command[0] === '') throw new ValidationError('no command given; put it after --: pier run -a APP -- CMD ARGS...');
  if (body.command.reduce((n, a) => n + Buffer.byteLength(a) + 1, 0) > MAX_COMMAND_BYTES) throw new ValidationError(`the command is longer than ${MAX_COMMAND_BYTES} bytes`);
  if (body.command.some((a) => a.includes('\0'))) throw new ValidationError('the command may not contain NUL bytes');
  if (body.type !== undefined && !TYPE.test(body.type)) throw new ValidationError(`process type '${body.type.slice(0, 64)}' must be lower-case letters, digits, '-' or '_'`);
  if (body.pty && !TERM.test(body.pty.term)) throw new ValidationError(`TERM '${body.pty.term.slice(0, 64)}' is not a terminal name`);
  if (body.detach && body.pty) throw new ValidationError('a detached one-off has no terminal; drop --detach or the terminal');
  const { timeoutMs = 3_600_000, maxTimeoutMs = 86_400_000 } = ctx.run ?? {};
  const timeout = body.timeoutMs ?? timeoutMs;
  if (!Number.isInteger(timeout) || timeout < 1000 || timeout > maxTimeoutMs) {
    throw new ValidationError(`the time limit must be from 1 s to ${Math.round(maxTimeoutMs / 1000)} s, not ${body.timeoutMs} ms`);
  }
  return { command: body.command, pty: body.pty ?? null, detach: body.detach ?? false, timeoutMs: timeout, ...(body.type !== undefined ? { type: body.type } : {}) };
}

function hubOf(ctx: ApiContext): SessionsPort {
  if (!ctx.sessions) throw new PierError('PIER_NO_RUNNER', "this nexus has no sessions socket (nexus.sessionsBind), so it cannot run one-offs");
  return ctx.sessions;
}

function noRunner(): PierError {
  return new PierError('PIER_NO_RUNNER', "no runner is alive to run the one-off; check 'pier nodes' and start a runner");
}

function dynoNumber(name: string, app: string): number {
  const match = DYNO.exec(name);
  if (!match) throw new ValidationError(`'${name.slice(0, 64)}' is not a one-off; one-offs are named run.N (see 'pier ps -a ${app}')`);
  return Number(match[1]);
}

/** Starts a detached one-off and waits until its runner says it started (or why it could not). */
function startDetached(hub: SessionsPort, id: string, runnerId: string, spec: OneOffSpec): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      hub.detachClient(id);
      reject(new PierError('PIER_TIMEOUT', `${spec.dyno} did not start within ${DETACH_START_MS / 1000} s on runner '${runnerId}'`));
    }, DETACH_START_MS);
    hub.launch(id, runnerId, spec, {
      onStarted: () => {
        clearTimeout(timer);
        resolve(); // from here the hub only records its end
      },
      onOutput: () => undefined,
      onInputCredit: () => undefined,
      onExit: (exit) => {
        clearTimeout(timer);
        if (exit.isLost) reject(new PierError('PIER_NO_RUNNER', exit.error ?? 'the runner was lost'));
        else if (exit.error) reject(new ValidationError(exit.error));
        else resolve(); // it ended before the answer (a quick command)
      },
    });
  });
}

async function attach(ctx: ApiContext, req: IncomingMessage, socket: Duplex, log: Logger): Promise<void> {
  const match = ATTACH_PATH.exec(req.url ?? '');
  if (!match) throw new NotFoundError(`no such endpoint: ${req.method} ${(req.url ?? '').split('?')[0]}`);
  if (String(req.headers.upgrade ?? '').toLowerCase() !== SESSION_UPGRADE) throw new ValidationError(`attach needs 'Upgrade: ${SESSION_UPGRADE}'`);
  const header = req.headers.authorization;
  const token = typeof header === 'string' ? /^Bearer\s+(\S+)$/i.exec(header)?.[1] : undefined;
  const principal = await authenticate(ctx.pool, token);
  const ref = await resolveApp(ctx.pool, principal, decodeURIComponent(match[1]!));
  const number = dynoNumber(decodeURIComponent(match[2]!), ref.name);
  const hub = hubOf(ctx);
  const runnerId = hub.pickRunner();
  if (!runnerId) {
    const row = await oneOffState(ctx.pool, ref, number);
    if (row?.state === 'created') await markOneOffExited(ctx.pool, row.id, null);
    throw noRunner();
  }
  const claimed = await claimOneOff(ctx.pool, ref, number, runnerId, ctx.nexusId);
  if (!claimed) throw new ConflictError(`run.${number} of '${ref.name}' is not waiting for a client (it is attached already, detached or over); start another with pier run`);
  if (socket.destroyed) {
    await markOneOffExited(ctx.pool, claimed.id, null);
    return;
  }
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${SESSION_UPGRADE}\r\n\r\n`);
  const tcp = socket as Duplex & { setNoDelay?: (on: boolean) => void; setTimeout?: (ms: number) => void };
  tcp.setNoDelay?.(true);
  tcp.setTimeout?.(0); // no HTTP idle or keep-alive time-out on a session (the relay pings, the client watches)
  log.info({ appId: ref.name, dyno: claimed.spec.dyno, runnerId }, 'one-off attached');
  relaySession(socket, hub, claimed.id, runnerId, claimed.spec, log);
}

function refuseUpgrade(socket: Duplex, code: string, message: string): void {
  if (socket.destroyed) return;
  const status = httpStatusFor(code);
  const body = JSON.stringify({ error: { code, message } });
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
}
