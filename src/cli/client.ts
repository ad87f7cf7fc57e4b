/**
 * The CLI's HTTP client for the JSON API: tries every API URL it knows (a nexus that refuses the connection,
 * times out or answers 503 is skipped) and turns `{"error":{...}}` bodies into PierErrors. Mutations carry an
 * Idempotency-Key, so a retry on the next replica is not applied twice.
 */
import { randomUUID } from 'node:crypto';
import { StringDecoder } from 'node:string_decoder';
import { Agent, request } from 'undici';
import { PierError, isErrorCode } from '../core/errors.js';
import type { Credentials } from './credentials.js';

export interface ApiClientOptions {
  /** Time to connect to one replica. @default 1000 */
  connectTimeoutMs?: number;
  /** Time to wait for a response from one replica. @default 30000 */
  responseTimeoutMs?: number;
}

export class ApiClient {
  private readonly agent: Agent;

  constructor(
    private readonly credentials: Pick<Credentials, 'apiUrls' | 'token'>,
    private readonly options: ApiClientOptions = {},
  ) {
    this.agent = new Agent({
      connect: { timeout: options.connectTimeoutMs ?? 1000 },
      headersTimeout: options.responseTimeoutMs ?? 30_000,
      bodyTimeout: options.responseTimeoutMs ?? 30_000,
    });
  }

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
    const text = await response.body.text();
    const parsed = parseJson(text);
    if (response.statusCode >= 400) throw errorFromBody(response.statusCode, parsed, text);
    return parsed as T;
  }

  /**
   * GETs a streaming text resource (`/logs?follow=1`) and hands each piece to `onText` until the server ends it
   * or `signal` aborts; no body time-out applies.
   */
  async stream(path: string, onText: (text: string) => void, signal?: AbortSignal): Promise<void> {
    const headers = { authorization: `Bearer ${this.credentials.token}`, accept: 'text/plain, application/json' };
    const response = await this.firstAnswer('GET', path, headers, undefined, { bodyTimeout: 0, signal });
    if (response.statusCode >= 400) {
      const text = await response.body.text();
      throw errorFromBody(response.statusCode, parseJson(text), text);
    }
    const decoder = new StringDecoder('utf8');
    try {
      for await (const piece of response.body) onText(decoder.write(piece as Buffer));
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
    extra: { bodyTimeout?: number; signal?: AbortSignal | undefined } = {},
  ): Promise<Awaited<ReturnType<typeof request>>> {
    const failures: string[] = [];
    let lastError: PierError | undefined;
    for (const base of this.credentials.apiUrls) {
      const url = `${base.replace(/\/+$/, '')}${path}`;
      let response: Awaited<ReturnType<typeof request>>;
      try {
        response = await request(url, { method: method as 'GET', headers, body: payload, dispatcher: this.agent, ...extra });
      } catch (err) {
        if (extra.signal?.aborted) throw err;
        failures.push(`${base}: ${describeNetworkError(err)}`);
        continue;
      }
      if (response.statusCode === 503 || response.statusCode === 502) {
        const text = await response.body.text();
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

  close(): Promise<void> {
    return this.agent.close();
  }
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
  if (code === 'UND_ERR_CONNECT_TIMEOUT') return 'connect timed out';
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') return 'no response in time';
  return code ?? (err as Error).message;
}
