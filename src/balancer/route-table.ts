/**
 * The balancer's route table, pure (no I/O): which app a Host header leads to and which instances serve it.
 * Loaded from a nexus snapshot and then kept current by applying state events in order; it is never reloaded
 * from scratch unless the event follower falls back to a snapshot.
 */
import { backendKey, Instance, isRoutedIn, validatorFor, type RoutedApp, type Snapshot, type StateEvent } from '../protocol/index.js';
import { HostIndex, normalizeHost } from './host-match.js';

/** One instance the balancer may send requests to. */
export interface Backend {
  /** Instance id. */
  readonly id: string;
  readonly host: string;
  readonly port: number;
  /** `host:port` (`[v6]:port`), the key of the upstream connection pool. */
  readonly address: string;
  /** Release version the instance runs. */
  readonly release: number;
  /** The runner that runs it. */
  readonly runnerId: string;
  /** Requests it serves at once, when its runner said (upstreams.ts keeps fewer connections to it than that). */
  readonly capacity?: number;
}

/** An app as routed: its current backends and the round-robin cursor over them. */
export interface AppRoute {
  readonly name: string;
  /** Ready instances of the live release that have a port, in a stable order. */
  backends: readonly Backend[];
  cursor: number;
}

/** What a Host header leads to. */
export type RouteLookup =
  | { kind: 'app'; host: string; route: AppRoute }
  /** No app has this host (or it is a reserved stage name): 404. */
  | { kind: 'unknown'; host: string };

export interface RouteTableOptions {
  /** Every app answers at `<app>.<domain>`. */
  domain: string;
  /** The clock held backends are timed by. @default Date.now */
  now?: () => number;
}

/**
 * Longest time a forgotten backend is held. A restarted runner keeps such a vassal serving for at most
 * runner/forgotten-vassals.ts KEEP_FORGOTTEN_MS (longer, counted from later), and tells the balancers
 * (`instance.released`) before it stops one: a balancer that missed that still lets go before the port can be free.
 */
export const HELD_MAX_MS = 20_000;

interface AppEntry extends AppRoute {
  /** The live backends the state gives (what the digest covers); `backends` adds the held ones while this is empty. */
  stateBackends: readonly Backend[];
  /**
   * Backends of instances the state forgot while they were serving (their runner was declared dead: its emperor
   * and apps most likely still run, a killed runner leaves them serving), kept while the state offers no other.
   */
  held: readonly Backend[];
  hostnames: Set<string>;
  instances: Map<string, Instance>;
  /** stage.<app>.<domain>: ready instances of the stage release. */
  stage: AppRoute;
  /** A release holds the stage slot (its instances may still be starting). */
  isStaged: boolean;
}

const isInstance = validatorFor(Instance);

function backendOf(instance: Instance, slot: 'live' | 'stage' = 'live'): Backend | undefined {
  if (!isRoutedIn(instance, slot) || instance.port === null || instance.isOutOfRotation === true) return undefined;
  const host = instance.host.includes(':') && !instance.host.startsWith('[') ? `[${instance.host}]` : instance.host;
  return {
    id: instance.id, host: instance.host, port: instance.port, address: `${host}:${instance.port}`, release: instance.release, runnerId: instance.runnerId,
    ...(instance.capacity === undefined ? {} : { capacity: instance.capacity }),
  };
}

/** Host → app → backends, with round-robin picking; see the module comment. */
export class RouteTable {
  /** Event version the table reflects (-1 before the first snapshot). */
  version = -1;
  /** Events whose data did not have the expected shape (ignored). */
  invalidEvents = 0;
  /** Bumped at every load and applied event (a cached digest is stale once it changed). */
  revision = 0;
  private readonly apps = new Map<string, AppEntry>();
  private readonly hosts: HostIndex;

  private readonly domain: string;
  private readonly now: () => number;
  /** When each held backend (by instance id) was first held; kept across snapshot loads. */
  private readonly heldSince = new Map<string, number>();
  /** Balancers of the cluster (this one included) → whether it is up, for each one's share of an instance's threads. */
  private readonly balancers = new Map<string, boolean>();
  private upBalancers = 1;

  constructor(options: RouteTableOptions) {
    this.domain = options.domain.toLowerCase();
    this.now = options.now ?? Date.now;
    this.hosts = new HostIndex(options.domain.toLowerCase());
  }

  /**
   * How many balancers are up (at least 1): each keeps its share of an instance's threads (upstreams.ts), so
   * together they never hold every one.
   */
  get balancerCount(): number {
    return this.upBalancers; // read per proxied request: counted when a balancer comes or goes, not here
  }

  private noteBalancer(id: string, isUp: boolean): void {
    this.balancers.set(id, isUp);
    let up = 0;
    for (const value of this.balancers.values()) if (value) up += 1;
    this.upBalancers = Math.max(1, up);
  }

  /** Replaces the whole table with a snapshot's state. */
  load(snapshot: Snapshot): void {
    this.revision += 1;
    this.balancers.clear();
    this.upBalancers = 1;
    for (const node of snapshot.nodes) if (node.kind === 'balancer') this.noteBalancer(node.id, node.status === 'alive');
    // Backends served until now whose instances the new state no longer has (forgotten, as in rebuild).
    const known = new Set(snapshot.instances.map((i) => i.id));
    const serving = new Map([...this.apps.values()].map((e) => [e.name, e.backends.filter((b) => !known.has(b.id))]));
    this.apps.clear();
    this.hosts.clear();
    for (const app of snapshot.apps) {
      const entry = this.ensureApp(app.name);
      for (const hostname of app.hostnames) this.addHost(entry, hostname);
    }
    for (const instance of snapshot.instances) this.ensureApp(instance.app).instances.set(instance.id, { ...instance });
    for (const entry of this.apps.values()) {
      entry.held = serving.get(entry.name) ?? [];
      this.rebuild(entry);
    }
    this.noteHeld();
    this.version = snapshot.version;
  }

  /** Applies one event (in version order); returns true when routes may have changed. */
  apply(event: StateEvent): boolean {
    this.version = event.version;
    this.revision += 1;
    const appName = event.app;
    switch (event.type) {
      case 'app.created':
        if (appName === null) return this.invalid();
        this.ensureApp(appName);
        return true;
      case 'app.destroyed': {
        const entry = appName === null ? undefined : this.apps.get(appName);
        if (!entry) return false;
        this.hosts.removeApp(entry.name, entry.hostnames);
        this.apps.delete(entry.name);
        this.noteHeld();
        return true;
      }
      case 'host.added':
      case 'host.removed': {
        const hostname = event.data.hostname;
        if (appName === null || typeof hostname !== 'string') return this.invalid();
        const entry = this.ensureApp(appName);
        if (event.type === 'host.added') this.addHost(entry, hostname);
        else {
          entry.hostnames.delete(hostname);
          this.hosts.removeHost(entry.name, hostname);
        }
        return true;
      }
      case 'instance.changed': {
        if (!isInstance.Check(event.data)) return this.invalid();
        const instance = { ...(event.data as Instance) };
        const entry = this.ensureApp(instance.app);
        entry.instances.set(instance.id, instance);
        this.rebuild(entry);
        return true;
      }
      case 'instance.removed':
        return this.noteHeld(this.removeInstance(appName, event.data.id, event.data.forgotten === true));
      case 'instance.released': {
        // The runner of a forgotten instance is stopping its vassal: its port is about to be free for anyone.
        const { id, runnerId } = event.data;
        if (typeof id !== 'string' || typeof runnerId !== 'string') return this.invalid();
        return this.dropHeld((b) => b.id === id && b.runnerId === runnerId);
      }
      case 'release.staged': {
        const release = event.data.release;
        const entry = appName === null ? undefined : this.apps.get(appName);
        if (typeof release !== 'number' && release !== null) return this.invalid();
        if (!entry) return false;
        for (const instance of entry.instances.values()) instance.isStage = instance.release === release;
        this.rebuild(entry);
        return true;
      }
      case 'release.failed': {
        // A stage release that failed leaves the slot.
        const entry = appName === null || event.data.stage !== true ? undefined : this.apps.get(appName);
        if (!entry) return false;
        for (const instance of entry.instances.values()) if (instance.release === event.data.release) instance.isStage = false;
        this.rebuild(entry);
        return true;
      }
      case 'release.live': {
        const release = event.data.release;
        const entry = appName === null ? undefined : this.apps.get(appName);
        if (typeof release !== 'number') return this.invalid();
        if (!entry) return false;
        for (const instance of entry.instances.values()) instance.isLive = instance.release === release;
        this.rebuild(entry, undefined, true);
        return true;
      }
      case 'node.registered':
      case 'node.down':
      case 'node.up': {
        // Routes do not change; the balancers' shares of instance threads may.
        const id = event.type === 'node.registered' ? event.data.nodeId : event.data.id;
        if (event.data.kind === 'balancer' && typeof id === 'string') this.noteBalancer(id, event.type !== 'node.down');
        return false;
      }
      default:
        return false; // config.changed, … do not change routes
    }
  }

  /** Looks up a raw Host header (any case, with or without port or trailing dot). */
  lookup(hostHeader: string | undefined): RouteLookup {
    const host = normalizeHost(hostHeader) ?? '';
    const target = host === '' ? undefined : this.hosts.match(host);
    const entry = target ? this.apps.get(target.app) : undefined;
    if (!entry || !target) return { kind: 'unknown', host };
    if (target.slot === 'live') return { kind: 'app', host, route: entry };
    // The stage name answers while a release holds the slot (503 while its instance starts), else 404.
    return entry.isStaged ? { kind: 'app', host, route: entry.stage } : { kind: 'unknown', host };
  }

  /** The app's route, if the app exists. */
  route(app: string): AppRoute | undefined {
    return this.apps.get(app);
  }

  /**
   * Picks the next backend round-robin, skipping `exclude` and backends `isUsable` rejects; when every other
   * backend is rejected it still returns a rejected one (a cooling-down backend beats none), never `exclude`.
   */
  pick(route: AppRoute, exclude?: Backend, isUsable?: (backend: Backend) => boolean): Backend | undefined {
    const { backends } = route;
    const count = backends.length;
    let fallback: Backend | undefined;
    for (let i = 0; i < count; i++) {
      const backend = backends[(route.cursor + i) % count]!;
      if (backend === exclude || (exclude !== undefined && backend.address === exclude.address)) continue;
      if (isUsable && !isUsable(backend)) {
        fallback ??= backend;
        continue;
      }
      route.cursor = (route.cursor + i + 1) % count;
      return backend;
    }
    return fallback;
  }

  /** The `host:port` of every backend of every app (to retire connection pools of instances that left). */
  addresses(): Set<string> {
    const out = new Set<string>();
    for (const entry of this.apps.values()) for (const backend of [...entry.backends, ...entry.stage.backends]) out.add(backend.address);
    return out;
  }

  /**
   * What a balancer's hostname checks probe: each app that has instances, with the names it answers at (its own
   * `<app>.<domain>` first, then its exact hostnames; wildcards cannot be probed).
   */
  probeTargets(): Array<{ app: string; hosts: string[] }> {
    const out: Array<{ app: string; hosts: string[] }> = [];
    for (const entry of this.apps.values()) {
      if (entry.instances.size === 0) continue;
      out.push({ app: entry.name, hosts: [`${entry.name}.${this.domain}`, ...[...entry.hostnames].filter((h) => !h.startsWith('*.')).sort()] });
    }
    return out;
  }

  /** The routes this table serves, for the integrity digest (protocol/route-digest.ts). */
  routes(): RoutedApp[] {
    return [...this.apps.values()].map((entry) => ({
      name: entry.name, hostnames: [...entry.hostnames], live: entry.stateBackends.map(backendKey), stage: entry.stage.backends.map(backendKey), isStaged: entry.isStaged,
    }));
  }

  /** Number of apps known. */
  get size(): number {
    return this.apps.size;
  }

  private ensureApp(name: string): AppEntry {
    let entry = this.apps.get(name);
    if (!entry) {
      entry = {
        name, backends: [], stateBackends: [], held: [], cursor: 0, hostnames: new Set(), instances: new Map(), stage: { name, backends: [], cursor: 0 }, isStaged: false,
      };
      this.apps.set(name, entry);
      this.hosts.addApp(name);
    }
    return entry;
  }

  private addHost(entry: AppEntry, hostname: string): void {
    entry.hostnames.add(hostname);
    this.hosts.addHost(entry.name, hostname);
  }

  private removeInstance(appName: string | null, id: unknown, isForgotten: boolean): boolean {
    if (typeof id !== 'string') return this.invalid();
    const entries = appName !== null && this.apps.has(appName) ? [this.apps.get(appName)!] : [...this.apps.values()];
    for (const entry of entries) {
      const instance = entry.instances.get(id);
      if (instance && entry.instances.delete(id)) {
        this.rebuild(entry, isForgotten ? backendOf(instance) : undefined);
        return true;
      }
    }
    return false;
  }

  /**
   * Recomputes an app's backends; keeps the cursor in range so round-robin continues smoothly. `lost` is a live
   * backend whose instance the state just forgot while it was serving (its runner was declared dead; a stop takes
   * an instance out of rotation first). When that leaves the app with no backend, the lost ones are held and
   * still tried — a 502 from a vassal that really died is no worse than the 503 of an empty route — until the
   * state offers a ready backend again, a release goes live, or the app is destroyed.
   */
  private rebuild(entry: AppEntry, lost?: Backend, dropsHeld = false): void {
    entry.isStaged = [...entry.instances.values()].some((i) => i.isStage === true);
    for (const [route, slot] of [[entry, 'live'], [entry.stage, 'stage']] as const) {
      const backends: Backend[] = [];
      for (const instance of entry.instances.values()) {
        const backend = backendOf(instance, slot);
        if (backend) backends.push(backend);
      }
      backends.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      if (slot === 'live') {
        const previous = entry.backends;
        entry.stateBackends = backends;
        if (backends.length > 0 || dropsHeld) entry.held = [];
        else if (lost && previous.some((b) => b.id === lost.id)) entry.held = previous;
        route.backends = backends.length > 0 ? backends : entry.held;
      } else {
        route.backends = backends;
      }
      route.cursor = route.backends.length === 0 ? 0 : route.cursor % route.backends.length;
    }
  }

  /**
   * Drops held backends held for HELD_MAX_MS (see there); the balancer calls it every second. Returns true when
   * routes changed.
   */
  expireHeld(): boolean {
    const now = this.now();
    const isExpired = (b: Backend): boolean => now - (this.heldSince.get(b.id) ?? now) >= HELD_MAX_MS;
    return this.dropHeld(isExpired);
  }

  /** Removes the held backends `isGone` selects from every app; true when any was. */
  private dropHeld(isGone: (backend: Backend) => boolean): boolean {
    let isChanged = false;
    for (const entry of this.apps.values()) {
      if (!entry.held.some(isGone)) continue;
      entry.held = entry.held.filter((b) => !isGone(b));
      this.rebuild(entry);
      isChanged = true;
    }
    if (isChanged) {
      this.revision += 1;
      this.noteHeld();
    }
    return isChanged;
  }

  /** Starts the clock of newly held backends and forgets the ones no longer held; passes `result` through. */
  private noteHeld<T>(result?: T): T {
    const held = new Set<string>();
    const now = this.now();
    for (const entry of this.apps.values()) {
      for (const backend of entry.held) {
        held.add(backend.id);
        if (!this.heldSince.has(backend.id)) this.heldSince.set(backend.id, now);
      }
    }
    for (const id of this.heldSince.keys()) if (!held.has(id)) this.heldSince.delete(id);
    return result as T;
  }

  /** Backends held after their instances were forgotten (see rebuild), by app. */
  heldBackends(app: string): readonly Backend[] {
    return this.apps.get(app)?.held ?? [];
  }

  private invalid(): false {
    this.invalidEvents += 1;
    return false;
  }
}
