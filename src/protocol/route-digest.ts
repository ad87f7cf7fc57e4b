/**
 * The route-table digest both sides of the balancers' integrity check compute: a balancer over the table it serves
 * (RouteTable.routes()), the leader over a snapshot of PostgreSQL at the same event version (routesOfSnapshot).
 * One rule decides which instances a balancer routes to (isRoutedIn), so both derive the same routes from the same
 * state, and one function hashes them, so equal routes give equal digests whatever order they were built in.
 */
import { createHash } from 'node:crypto';
import type { Instance } from './common.js';
import type { Snapshot } from './control.js';

/** One app as a balancer routes it. */
export interface RoutedApp {
  name: string;
  hostnames: readonly string[];
  /** `id@host:port` of each backend of the live release. */
  live: readonly string[];
  /** `id@host:port` of each backend of the stage release. */
  stage: readonly string[];
  /** A release holds the stage slot (stage.<app>.<domain> answers, 503 while it starts). */
  isStaged: boolean;
}

/** The routing rule: a ready instance with a port, of the live (or stage) release. */
export function isRoutedIn(instance: Instance, slot: 'live' | 'stage'): boolean {
  const isInSlot = slot === 'live' ? instance.isLive : instance.isStage === true;
  return instance.state === 'ready' && isInSlot && instance.port !== null;
}

/** How a backend appears in a digest. */
export function backendKey(instance: Pick<Instance, 'id' | 'host' | 'port'>): string {
  return `${instance.id}@${instance.host}:${instance.port ?? ''}`;
}

/** The routes a balancer holds after loading this snapshot. */
export function routesOfSnapshot(snapshot: Pick<Snapshot, 'apps' | 'instances'>): RoutedApp[] {
  const apps = new Map<string, RoutedApp & { live: string[]; stage: string[] }>();
  const entry = (name: string): RoutedApp & { live: string[]; stage: string[] } => {
    let app = apps.get(name);
    if (!app) apps.set(name, (app = { name, hostnames: [], live: [], stage: [], isStaged: false }));
    return app;
  };
  for (const app of snapshot.apps) entry(app.name).hostnames = [...app.hostnames];
  for (const instance of snapshot.instances) {
    const app = entry(instance.app);
    if (instance.isStage === true) app.isStaged = true;
    if (isRoutedIn(instance, 'live')) app.live.push(backendKey(instance));
    if (isRoutedIn(instance, 'stage')) app.stage.push(backendKey(instance));
  }
  return [...apps.values()];
}

/** SHA-256 (hex) of the routes in a canonical order. */
export function routeDigest(routes: readonly RoutedApp[]): string {
  const hash = createHash('sha256');
  const sorted = [...routes].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const app of sorted) {
    hash.update(`${app.name}\n${[...app.hostnames].sort().join(',')}\n${[...app.live].sort().join(',')}\n${[...app.stage].sort().join(',')}\n${app.isStaged ? 1 : 0}\n`);
  }
  return hash.digest('hex');
}
