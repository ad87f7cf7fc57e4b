/**
 * Host header matching, pure: normalizing a Host header and the index of exact, platform and wildcard names.
 *
 * Wildcard semantics (chosen to match nginx's `*.example.com` and TLS certificates' intent, extended to depth):
 * `*.example.com` matches any name with ONE OR MORE labels left of `example.com` (`a.example.com`,
 * `a.b.example.com`) but never `example.com` itself. When several wildcards match, the longest suffix wins
 * (`*.b.example.com` beats `*.example.com` for `a.b.example.com`). Exact names always beat wildcards.
 */

/** Where a hostname leads: an app's live slot, or its stage slot (reserved until stage deploys exist). */
export interface HostTarget {
  app: string;
  slot: 'live' | 'stage';
}

/**
 * Lower-cases a Host header and strips its port and a trailing dot; undefined when empty or malformed.
 * IPv6 literals keep their brackets (`[::1]:8080` → `[::1]`).
 */
export function normalizeHost(raw: string | undefined): string | undefined {
  if (raw === undefined || raw.length === 0) return undefined;
  let host = raw.toLowerCase();
  if (host.charCodeAt(0) === 91 /* [ */) {
    const end = host.indexOf(']');
    if (end < 0) return undefined;
    host = host.slice(0, end + 1);
  } else {
    const colon = host.indexOf(':');
    if (colon >= 0) host = host.slice(0, colon);
  }
  if (host.endsWith('.')) host = host.slice(0, -1);
  host = host.trim();
  return host.length === 0 ? undefined : host;
}

/** True for `*.suffix` names. */
export function isWildcard(hostname: string): boolean {
  return hostname.startsWith('*.');
}

/**
 * Hostname → app index. Platform names (`<app>.<domain>`, `stage.<app>.<domain>`) are kept apart from owners'
 * hostnames and win over them, so an owner cannot take over another app's platform name.
 */
export class HostIndex {
  private readonly platform = new Map<string, HostTarget>();
  private readonly exact = new Map<string, HostTarget>();
  /** Wildcard suffix (`example.com` for `*.example.com`) → app. */
  private readonly wildcards = new Map<string, HostTarget>();

  constructor(private readonly domain: string) {}

  addApp(app: string): void {
    this.platform.set(`${app}.${this.domain}`, { app, slot: 'live' });
    this.platform.set(`stage.${app}.${this.domain}`, { app, slot: 'stage' });
  }

  removeApp(app: string, hostnames: Iterable<string>): void {
    this.platform.delete(`${app}.${this.domain}`);
    this.platform.delete(`stage.${app}.${this.domain}`);
    for (const hostname of hostnames) this.removeHost(app, hostname);
  }

  addHost(app: string, hostname: string): void {
    const name = hostname.toLowerCase();
    const target: HostTarget = { app, slot: 'live' };
    if (isWildcard(name)) this.wildcards.set(name.slice(2), target);
    else this.exact.set(name, target);
  }

  /** Removes `hostname` only if it still points at `app` (a later add for another app wins). */
  removeHost(app: string, hostname: string): void {
    const name = hostname.toLowerCase();
    const map = isWildcard(name) ? this.wildcards : this.exact;
    const key = isWildcard(name) ? name.slice(2) : name;
    if (map.get(key)?.app === app) map.delete(key);
  }

  clear(): void {
    this.platform.clear();
    this.exact.clear();
    this.wildcards.clear();
  }

  /** Finds the target of a normalized host: platform name, then exact hostname, then the longest wildcard. */
  match(host: string): HostTarget | undefined {
    const platform = this.platform.get(host);
    if (platform) return platform;
    const exact = this.exact.get(host);
    if (exact) return exact;
    if (this.wildcards.size === 0) return undefined;
    // Walk the suffixes from the longest (after the first label) to the shortest.
    for (let dot = host.indexOf('.'); dot >= 0; dot = host.indexOf('.', dot + 1)) {
      const wild = this.wildcards.get(host.slice(dot + 1));
      if (wild) return wild;
    }
    return undefined;
  }
}
