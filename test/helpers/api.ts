/** The JSON API as an owner calls it: one function per test file, bound to a token and a nexus (resolved per call). */
export interface ApiReply<T> {
  status: number;
  json: T;
}

export type ApiCall = <T>(method: string, path: string, body?: unknown, headers?: Record<string, string>) => Promise<ApiReply<T>>;

/** `body` as a Buffer is sent as a release (application/gzip), anything else as JSON; no token, no Authorization. */
export function apiCaller(base: () => string, token: string | undefined): ApiCall {
  return async <T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<ApiReply<T>> => {
    const isBytes = Buffer.isBuffer(body);
    const res = await fetch(`${base()}${path}`, {
      method,
      headers: { ...(token === undefined ? {} : { authorization: `Bearer ${token}` }), ...headers, ...(body === undefined ? {} : { 'content-type': isBytes ? 'application/gzip' : 'application/json' }) },
      body: body === undefined ? undefined : isBytes ? (body as Buffer) : JSON.stringify(body),
    });
    return { status: res.status, json: (await res.json()) as T };
  };
}
