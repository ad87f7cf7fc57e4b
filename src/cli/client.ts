/**
 * The CLI's HTTP client for the JSON API: tries every API URL it knows (a nexus that refuses the connection,
 * times out or answers 503 is skipped) and turns `{"error":{...}}` bodies into PierErrors. Mutations carry an
 * Idempotency-Key, so a retry on the next replica is not applied twice. Built on node:http (node:https loaded
 * only for an https:// URL): loading undici cost the CLI ~0.3 s of start-up on every command.
 */
import { randomUUID } from 'node:crypto';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import type { Agent as HttpsAgent } from 'node:https';
import { StringDecoder } from 'node:string_decoder';
import { PierError, isErrorCode } from '../core/errors.js';
import type { Credentials } from './credentials.js';

export interface ApiClientOptions {
  /** Time to connect to one replica. @default 1000 */
  connectTimeoutMs?: number;
  /** Time to wait for a response from one replica (and the longest silence within its body). @default 30000 */
  responseTimeoutMs?: number;
}

/** A failure to reach or hear from one replica; `code` picks its wording in describeNetworkError. */
class NetworkError extends Error {
  constructor(message: string, readonly code: string) {
    super(message);
  }
}

export class ApiClient {
  private httpAgent: HttpAgent | undefined;
  private httpsAgent: HttpsAgent | undefined;

  constructor(
    private readonly credentials: Pick<Credentials, 'apiUrls' | 'token'>,
    private readonly options: ApiClientOptions = {},
  ) {}

  get<T>(path: string): Promise<T> {
    return this.send<T>('GET', path);
  }

  post<T>(path: string, body: unknown, headers: Record<string, string> = {}): Promise<T> {
    return this.send<T>('POST', path, body, 'application/json', headers);
  }

  patch<T>(path: string, body: unknown, headers: Record<string, string> = {}): Promise<T> {
    return this.send<T>('PATCH', path, body, 'application/json', headers);
  }

  delete<T>(path: string): Promise<T> {
    return this.send<T>('DELETE', path);
  }

  /** Sends raw bytes (a release tarball). */
  upload<T>(path: string, bytes: Buffer, contentType: string, headers: Record<string, string> = {}): Promise<T> {
    return this.send<T>('POST', path, bytes, contentType, headers);
  }

  async send<T>(method: string, path: string, body?: unknown, contentType = 'application/json', extra: Record<string, string> = {}): Promise<T> {
    const headers: Record<string, string> = { ...extra, authorization: `Bearer ${this.credentials.token}`, accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = contentType;
    if (method !== 'GET') headers['idempotency-key'] = randomUUID();
    const payload = body === undefined ? undefined : Buffer.isBuffer(body) ? body : JSON.stringify(body);
    const response = await this.firstAnswer(method, path, headers, payload);
    const text = await readText(response);
    const parsed = parseJson(text);
    if (response.statusCode! >= 400) throw errorFromBody(response.statusCode!, parsed, text);
    return parsed as T;
  }

  /**
   * GETs a streaming text resource (`/logs?follow=1`) and hands each piece to `onText` until the server ends it
   * or `signal` aborts; no body time-out applies.
   */
  async stream(path: string, onText: (text: string) => void, signal?: AbortSignal): Promise<void> {
    const headers = { authorization: `Bearer ${this.credentials.token}`, accept: 'text/plain, application/json' };
    const response = await this.firstAnswer('GET', path, headers, undefined, { isStreaming: true, signal });
    if (response.statusCode! >= 400) {
      const text = await readText(response);
      throw errorFromBody(response.statusCode!, parseJson(text), text);
    }
    const decoder = new StringDecoder('utf8');
    try {
      for await (const piece of response) onText(decoder.write(piece as Buffer));
    } catch (err) {
      if (!signal?.aborted) throw new PierError('PIER_NEXUS_UNAVAILABLE', `the log stream broke off: ${describeNetworkError(err)}`);
    }
  }

  /**
   * The first replica's response that is not a 502/503 (those, refused connections and time-outs move on to the
   * next replica). When every replica answered 503 with an error body, that error is thrown: it says what is down.
   */
  private async firstAnswer(
    method: string, path: string, headers: Record<string, string>, payload: string | Buffer | undefined,
    extra: { isStreaming?: boolean; signal?: AbortSignal | undefined } = {},
  ): Promise<IncomingMessage> {
    const failures: string[] = [];
    let lastError: PierError | undefined;
    for (const base of this.credentials.apiUrls) {
      const url = `${base.replace(/\/+$/, '')}${path}`;
      let response: IncomingMessage;
      try {
        response = await this.request(new URL(url), method, headers, payload, extra);
      } catch (err) {
        if (extra.signal?.aborted) throw err;
        failures.push(`${base}: ${describeNetworkError(err)}`);
        continue;
      }
      if (response.statusCode === 503 || response.statusCode === 502) {
        const text = await readText(response);
        const parsed = parseJson(text) as { error?: unknown } | undefined;
        if (parsed?.error) lastError = errorFromBody(response.statusCode, parsed, text);
        failures.push(`${base}: HTTP ${response.statusCode}`);
        continue;
      }
      return response;
    }
    if (lastError) throw lastError;
    throw new PierError('PIER_NEXUS_UNAVAILABLE', `no API answered (${failures.join('; ')}); is the platform running? try 'pier status'`);
  }

  /**
   * One request to one replica, resolved with its response (body unread). The connect time-out runs until the
   * socket connects (a kept-alive socket has none); the response time-out is the longest silence on the socket
   * until the body ends (none for a stream).
   */
  private async request(
    url: URL, method: string, headers: Record<string, string>, payload: string | Buffer | undefined,
    extra: { isStreaming?: boolean; signal?: AbortSignal | undefined },
  ): Promise<IncomingMessage> {
    const isHttps = url.protocol === 'https:';
    const https = isHttps ? await import('node:https') : undefined;
    const agent = https ? (this.httpsAgent ??= new https.Agent({ keepAlive: true })) : (this.httpAgent ??= new HttpAgent({ keepAlive: true }));
    const send = https ? https.request : httpRequest;
    const connectTimeoutMs = this.options.connectTimeoutMs ?? 1000;
    const responseTimeoutMs = extra.isStreaming ? 0 : (this.options.responseTimeoutMs ?? 30_000);
    const allHeaders = payload === undefined ? headers : { ...headers, 'content-length': String(Buffer.byteLength(payload)) };
    return new Promise<IncomingMessage>((resolve, reject) => {
      let connectTimer: NodeJS.Timeout | undefined;
      const req = send(url, { method, headers: allHeaders, agent, ...(extra.signal ? { signal: extra.signal } : {}) });
      req.once('socket', (socket) => {
        if (!socket.connecting) return;
        connectTimer = setTimeout(() => req.destroy(new NetworkError('connect timed out', 'CONNECT_TIMEOUT')), connectTimeoutMs);
        socket.once('connect', () => clearTimeout(connectTimer));
      });
      req.setTimeout(responseTimeoutMs, () => req.destroy(new NetworkError('no response in time', 'RESPONSE_TIMEOUT')));
      req.once('response', (res) => {
        clearTimeout(connectTimer);
        resolve(res);
      });
      req.once('error', (err) => {
        clearTimeout(connectTimer);
        reject(err);
      });
      req.end(payload);
    });
  }

  close(): Promise<void> {
    this.httpAgent?.destroy();
    this.httpsAgent?.destroy();
    return Promise.resolve();
  }
}

/** The whole body as UTF-8 text. */
async function readText(response: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of response) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function parseJson(text: string): unknown {
  try {
    return text === '' ? undefined : JSON.parse(text);
  } catch {
    return undefined;
  }
}

function errorFromBody(status: number, parsed: unknown, text: string): PierError {
  const error = (parsed as { error?: { code?: unknown; message?: unknown; details?: unknown } } | undefined)?.error;
  if (error && typeof error.message === 'string') {
    const code = isErrorCode(error.code) ? error.code : status >= 500 ? 'PIER_INTERNAL' : 'PIER_BAD_REQUEST';
    const details = typeof error.details === 'object' && error.details !== null ? (error.details as Record<string, unknown>) : undefined;
    return new PierError(code, error.message, details ? { details } : {});
  }
  return new PierError(status >= 500 ? 'PIER_INTERNAL' : 'PIER_BAD_REQUEST', `HTTP ${status}: ${text.slice(0, 200)}`);
}

function describeNetworkError(err: unknown): string {
  const code = (err as { code?: string }).code;
  if (code === 'ECONNREFUSED') return 'connection refused';
  if (code === 'CONNECT_TIMEOUT') return 'connect timed out';
  if (code === 'RESPONSE_TIMEOUT') return 'no response in time';
  return code ?? (err as Error).message;
}
