/**
 * Attack 8 of #10, "bodies before tokens": an unauthenticated client (or an owner uploading to another owner's app)
 * sends a huge body. The API must answer 401/404 after reading the headers and at most the first socket read of the
 * body, and close the connection rather than read (or discard) the rest.
 *
 * How the bytes are measured, honestly: the test builds the real API (buildApi, real fastify, real PostgreSQL) and
 * listens on the server's 'connection' event, so it can read each server socket's `bytesRead` once the socket has
 * closed: what the server process took from the kernel, whatever the client managed to write into its buffers. The
 * client writes 16 KiB chunks, waiting for 'drain', and stops at the answer or at the close. If the server buffered
 * the body before checking the token (as before), bytesRead would be the whole 50 MiB (or the 1 MiB JSON limit);
 * the control case at the end (an authorized upload) shows the same meter counting megabytes when a body IS read.
 * The bound is 64 KiB of body because that is one socket read: Node reads 64 KiB at a time (libuv's buffer) and its
 * HTTP parser stops reading once the unread body passes the request stream's high-water mark, so the first read
 * (headers plus the start of the body, which the client here has already queued in the kernel) is all it takes.
 */
import { connect, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApi } from '../../src/api/index.js';
import { silentLogger } from '../../src/core/logger.js';
import { newToken, randomId } from '../../src/core/ids.js';
import { authenticate, createApp, createOwner, ensureAdmin, withTransaction } from '../../src/db/index.js';
import { testDatabase, testPool } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';

const dbUrl = await testDatabase();
const pool = testPool(dbUrl);
const KiB = 1024;
const MiB = 1024 * KiB;
const adminToken = newToken();
const api = buildApi(
  { pool, nexusId: 'ap-auth', deadAfterMs: 1500, isLeader: () => true, publishedVersion: () => 0, appUrl: (a) => `http://${a}.localhost/` },
  { bodyLimitBytes: 1 * MiB, maxReleaseBytes: 100 * MiB, log: silentLogger() },
);
/** Server sockets in the order they were accepted. */
const serverSockets: Socket[] = [];
let port: number;
let aliceToken: string;
let bobToken: string;
const app = `ap-${randomId(6)}`;

beforeAll(async () => {
  api.server.on('connection', (socket: Socket) => serverSockets.push(socket));
  await api.listen({ host: '127.0.0.1', port: 0 });
  port = (api.server.address() as AddressInfo).port;
  await withTransaction(pool, async (tx) => {
    await ensureAdmin(tx, 'admin', adminToken);
    aliceToken = (await createOwner(tx, `ap-alice-${randomId(6)}`)).token;
    bobToken = (await createOwner(tx, `ap-bob-${randomId(6)}`)).token;
  });
  await withTransaction(pool, async (tx) => createApp(tx, await authenticate(tx, aliceToken), app));
});

afterAll(async () => {
  await api.close();
});

interface Outcome {
  /** The status line's code, or 0 when no answer came. */
  status: number;
  response: string;
  /** Bytes of the body the client wrote before it saw the answer or the close. */
  clientWrote: number;
  /** Bytes the server read from this connection (headers included), counted after it closed. */
  serverRead: number;
  headerBytes: number;
  sawContinue: boolean;
}

/**
 * Sends `headers` and then up to `bodyBytes` of body in 16 KiB chunks (waiting for drain), stopping at the first
 * byte of the answer or at the close; with `waitForContinue` nothing of the body is sent before `100 Continue`.
 */
async function send(path: string, headers: Record<string, string>, bodyBytes: number, waitForContinue = false): Promise<Outcome> {
  const before = serverSockets.length;
  const head = `POST ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\n${Object.entries({ 'content-length': String(bodyBytes), ...headers }).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;
  const client = connect(port, '127.0.0.1');
  let response = '';
  let isClosed = false;
  let sawContinue = false;
  client.on('data', (chunk: Buffer) => {
    response += chunk.toString('latin1');
    if (response.startsWith('HTTP/1.1 100 Continue\r\n\r\n')) {
      sawContinue = true;
      response = response.slice('HTTP/1.1 100 Continue\r\n\r\n'.length);
    }
  });
  client.on('error', () => undefined); // a reset after the answer is fine
  const closed = new Promise<void>((resolve) => client.on('close', () => { isClosed = true; resolve(); }));
  await new Promise<void>((resolve) => client.once('connect', resolve));
  client.write(head);
  if (waitForContinue) await waitFor(() => sawContinue || response.length > 0 || isClosed, { timeoutMs: 5000, name: '100 Continue or an answer' });
  const chunk = Buffer.alloc(16 * KiB, 0x61);
  let wrote = 0;
  const answered = () => response.length > 0 || isClosed;
  while (wrote < bodyBytes && !answered() && (!waitForContinue || sawContinue)) {
    const n = Math.min(chunk.length, bodyBytes - wrote);
    const isFlushed = client.write(n === chunk.length ? chunk : chunk.subarray(0, n));
    wrote += n;
    if (!isFlushed) {
      await new Promise<void>((resolve) => {
        const done = () => resolve();
        client.once('drain', done);
        client.once('close', done);
        client.once('data', done);
      });
    }
  }
  await waitFor(() => response.includes('\r\n\r\n') || isClosed, { timeoutMs: 10_000, name: 'the answer' });
  client.end();
  await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 3000))]);
  client.destroy();
  const server = serverSockets[before]!;
  await waitFor(() => server.destroyed, { timeoutMs: 5000, name: 'the server closing the connection' });
  return {
    status: Number(/^HTTP\/1\.1 (\d{3})/.exec(response)?.[1] ?? 0),
    response,
    clientWrote: wrote,
    serverRead: server.bytesRead,
    headerBytes: Buffer.byteLength(head),
    sawContinue,
  };
}

function errorOf(outcome: Outcome): { code: string; message: string } {
  const body = outcome.response.slice(outcome.response.indexOf('\r\n\r\n') + 4);
  return (JSON.parse(body) as { error: { code: string; message: string } }).error;
}

function report(what: string, o: Outcome): void {
  // The figures the issue asks for: how much of the body the server read before answering.
  console.log(`${what}: status ${o.status}, server read ${o.serverRead} bytes (${o.headerBytes} of headers), client wrote ${o.clientWrote} body bytes before the answer`);
}

describe('api auth before body', () => {
  it('answers a 50 MiB unauthenticated release upload with 401 before reading more than 64 KiB, and closes the connection', async () => {
    const o = await send(`/v1/apps/${app}/releases`, { 'content-type': 'application/gzip' }, 50 * MiB);
    report('no token', o);
    expect(o.status).toBe(401);
    expect(errorOf(o).code).toBe('PIER_UNAUTHORIZED');
    expect(o.response.toLowerCase()).toContain('connection: close');
    expect(o.serverRead - o.headerBytes).toBeLessThanOrEqual(64 * KiB);
  });

  it('does the same for a wrong token, and for a JSON route with a body over its limit', async () => {
    const wrong = await send(`/v1/apps/${app}/releases`, { 'content-type': 'application/gzip', authorization: 'Bearer pier_wrong' }, 50 * MiB);
    report('wrong token', wrong);
    expect(wrong.status).toBe(401);
    expect(wrong.serverRead - wrong.headerBytes).toBeLessThanOrEqual(64 * KiB);
    const json = await send('/v1/apps', { 'content-type': 'application/json' }, 50 * MiB);
    report('JSON route, no token', json);
    expect(json.status).toBe(401);
    expect(json.serverRead - json.headerBytes).toBeLessThanOrEqual(64 * KiB);
  });

  it("answers an owner's upload to another owner's app with 404 before reading its body", async () => {
    const o = await send(`/v1/apps/${app}/releases`, { 'content-type': 'application/gzip', authorization: `Bearer ${bobToken}` }, 50 * MiB);
    report("another owner's app", o);
    expect(o.status).toBe(404);
    expect(errorOf(o)).toEqual({ code: 'PIER_NOT_FOUND', message: `app '${app}' not found; run 'pier apps' to list your apps` });
    expect(o.serverRead - o.headerBytes).toBeLessThanOrEqual(64 * KiB);
  });

  it('answers Expect: 100-continue with 401 instead of 100, and with 100 only for an authorized upload', async () => {
    const refused = await send(`/v1/apps/${app}/releases`, { 'content-type': 'application/gzip', expect: '100-continue' }, 50 * MiB, true);
    expect(refused.sawContinue).toBe(false);
    expect(refused.status).toBe(401);
    expect(refused.clientWrote).toBe(0);
    expect(refused.serverRead).toBe(refused.headerBytes);
    const foreign = await send(`/v1/apps/${app}/releases`, { 'content-type': 'application/gzip', expect: '100-continue', authorization: `Bearer ${bobToken}` }, MiB, true);
    expect(foreign.sawContinue).toBe(false);
    expect(foreign.status).toBe(404);
    // The owner gets the 100, sends the body, and it is read (and refused as not a tar.gz).
    const allowed = await send(`/v1/apps/${app}/releases`, { 'content-type': 'application/gzip', expect: '100-continue', authorization: `Bearer ${aliceToken}` }, 4 * MiB, true);
    report('authorized upload with Expect (control case)', allowed);
    expect(allowed.sawContinue).toBe(true);
    expect(allowed.status).toBe(400);
    expect(allowed.serverRead).toBeGreaterThanOrEqual(4 * MiB);
  });

  it('reads the whole body of an authorized upload: the meter sees bodies that are read (control case)', async () => {
    const o = await send(`/v1/apps/${app}/releases`, { 'content-type': 'application/gzip', authorization: `Bearer ${aliceToken}` }, 4 * MiB);
    report('authorized upload (control case)', o);
    expect(o.status).toBe(400);
    expect(o.serverRead).toBeGreaterThanOrEqual(4 * MiB);
  });

  it('still answers a bodiless unauthenticated GET with 401 on a kept-alive connection', async () => {
    const res = await fetch(`http://127.0.0.1:${port}/v1/apps`);
    expect(res.status).toBe(401);
    expect(res.headers.get('connection')).not.toBe('close');
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('PIER_UNAUTHORIZED');
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
  });
});
