/**
 * Forgotten vassals: when the nexus declares a runner dead it forgets that runner's instances, yet a killed runner's
 * emperor keeps them serving, and balancers keep trying an app's last one ("held", balancer/route-table.ts) until
 * a ready replacement exists. A restarted runner that stopped such a vassal at once would free its port while
 * balancers still send the app's traffic there, and any local process (another tenant's app may bind any free port)
 * could take it. So the runner keeps a forgotten vassal serving while its app has no other routed instance in the
 * state, for KEEP_FORGOTTEN_MS at most; before it stops one it tells the balancers (a `stopped` report for an
 * instance the state forgot becomes an `instance.released` event), waits RELEASE_GRACE_MS for them to let go,
 * and then quarantines the port (ports.ts) so no other instance is given it soon.
 */
import { isRoutedIn, type Instance } from '../protocol/index.js';

/**
 * Longest time a restarted runner keeps a forgotten vassal serving. Longer than the balancers' own bound on a held
 * backend (route-table.ts HELD_MAX_MS, counted from the forget, which comes first), so a balancer that missed the
 * `instance.released` event has let go anyway before the port is free.
 */
export const KEEP_FORGOTTEN_MS = 30_000;

/** Time between telling the balancers a forgotten vassal stops (`instance.released`) and stopping it. */
export const RELEASE_GRACE_MS = 1000;

/** Which instances of each app the state routes live traffic to (the balancers' rule, isRoutedIn), by app. */
export class RoutedInstances {
  private readonly byApp = new Map<string, Set<string>>();
  private readonly appOf = new Map<string, string>();

  /** Replaces everything with a snapshot's instances. */
  load(instances: readonly Instance[]): void {
    this.byApp.clear();
    this.appOf.clear();
    for (const instance of instances) this.update(instance);
  }

  /** Records one instance's new state. */
  update(instance: Instance): void {
    this.remove(instance.id);
    if (!isRoutedIn(instance, 'live') || instance.isOutOfRotation === true) return;
    let ids = this.byApp.get(instance.app);
    if (!ids) this.byApp.set(instance.app, (ids = new Set()));
    ids.add(instance.id);
    this.appOf.set(instance.id, instance.app);
  }

  remove(id: string): void {
    const app = this.appOf.get(id);
    if (app === undefined) return;
    this.appOf.delete(id);
    const ids = this.byApp.get(app)!;
    ids.delete(id);
    if (ids.size === 0) this.byApp.delete(app);
  }

  /** True when the state routes `app` to at least one instance. */
  isRouted(app: string): boolean {
    return this.byApp.has(app);
  }
}
