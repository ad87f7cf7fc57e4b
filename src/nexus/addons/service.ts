/**
 * The add-on framework: create, list, show and destroy an app's add-ons through its kind's driver, keeping the row,
 * the config var and the release consistent (a failure anywhere leaves nothing), and removing what is left
 * 'destroying' (after apps:destroy, or a nexus killed midway) on the leader.
 */
import { randomInt } from 'node:crypto';
import type pg from 'pg';
import type { Logger } from 'pino';
import { ConflictError, PierError } from '../../core/errors.js';
import {
  ADDON_KINDS, appendEvent, appliedRequest, changeConfigVars, deleteDestroyedAddon, findAddonByName, getAddon,
  getConfigVars, insertAddon, isAddonNameTaken, listAddons, listDestroyingAddons, markAddonDestroying, mutate,
  resolveApp, type Addon, type AddonKind, type DeployClaim, type Principal,
} from '../../db/index.js';
import type { AddonView } from '../../protocol/index.js';
import type { AddonKindDriver, AddonKinds, AddonRemains } from './kinds.js';

/** How a mutation is run: its idempotency key, the deploy claim a new release takes, and the lock-wait wrapper. */
export interface AddonMutation {
  requestId?: string | undefined;
  claim?: DeployClaim;
  /** Runs the transaction, retrying it while another deploy holds the app's lock (the API's withDeployLock). */
  locked?: <T>(run: () => Promise<T>) => Promise<T>;
}

const WORDS = [
  'amber', 'aqua', 'arctic', 'ash', 'azure', 'birch', 'blue', 'brisk', 'calm', 'cedar', 'clear', 'cobalt', 'coral',
  'crisp', 'curly', 'dawn', 'deep', 'dusk', 'east', 'elm', 'fern', 'fir', 'frost', 'gold', 'green', 'grey', 'hazel',
  'ivory', 'jade', 'lunar', 'maple', 'mint', 'misty', 'north', 'oak', 'ochre', 'olive', 'pearl', 'pine', 'plum',
  'quiet', 'rain', 'reed', 'ruby', 'sage', 'sandy', 'silver', 'slate', 'snow', 'solar', 'south', 'spruce', 'still',
  'stone', 'swift', 'teal', 'tidal', 'west', 'white', 'willow',
];

/** A Heroku-style name, e.g. 'postgresql-amber-48213'. */
export function addonName(kind: AddonKind): string {
  return `${kind}-${WORDS[randomInt(WORDS.length)]}-${randomInt(10_000, 100_000)}`;
}

export class AddonService {
  private readonly log: Logger;
  private reaping: Promise<void> = Promise.resolve();

  constructor(private readonly options: { pool: pg.Pool; kinds: AddonKinds; log: Logger }) {
    this.log = options.log.child({ component: 'nexus.addons' });
  }

  /** The public shape of a row (no secret). */
  view(addon: Addon, state: string = addon.state): AddonView {
    const driver = this.options.kinds.get(addon.kind);
    return {
      name: addon.name, kind: addon.kind, app: addon.appName, state, configVar: addon.configVar,
      createdAt: addon.createdAt.getTime(), updatedAt: addon.updatedAt.getTime(), details: driver?.details(addon) ?? {},
    };
  }

  async list(principal: Principal, appName: string): Promise<AddonView[]> {
    const app = await resolveApp(this.options.pool, principal, appName);
    return (await listAddons(this.options.pool, app)).map((a) => this.view(a));
  }

  async info(principal: Principal, appName: string, name: string): Promise<AddonView> {
    const app = await resolveApp(this.options.pool, principal, appName);
    return this.view(await getAddon(this.options.pool, app, name));
  }

  /** The driver of a kind the caller named; an unknown kind, or one this platform does not offer, is a 422. */
  driverFor(kind: string): AddonKindDriver {
    const offered = [...this.options.kinds.keys()].join(', ') || 'none';
    if (!(ADDON_KINDS as readonly string[]).includes(kind)) {
      throw new PierError('PIER_UNSUPPORTED', `add-on kind '${kind.slice(0, 64)}' is unknown; choose one of: ${offered}`);
    }
    const driver = this.options.kinds.get(kind as AddonKind);
    if (!driver) throw new PierError('PIER_UNSUPPORTED', `add-on kind '${kind}' is not available on this platform; available: ${offered}`);
    return driver;
  }

  /**
   * Attaches a new add-on: the kind makes its resource first (outside any transaction), then one transaction writes
   * the row, the config var and the new release; when that fails, the resource is removed again.
   */
  async create(principal: Principal, appName: string, kind: string, mutation: AddonMutation = {}): Promise<AddonView> {
    const { pool } = this.options;
    const driver = this.driverFor(kind);
    const app = await resolveApp(pool, principal, appName);
    if (mutation.requestId !== undefined) {
      const applied = await appliedRequest(pool, mutation.requestId, 'addon.create');
      if (applied) return applied.reply as AddonView;
    }
    if ((await listAddons(pool, app)).some((a) => a.kind === driver.kind)) {
      throw new ConflictError(`app '${app.name}' already has a ${driver.kind} add-on; run 'pier addons -a ${app.name}' to see it`);
    }
    const name = await this.freshName(driver.kind);
    const made = await driver.provision({ app, name });
    const remains: AddonRemains = { name, kind: driver.kind, plan: made.plan, secret: made.secret };
    const locked = mutation.locked ?? (<T>(run: () => Promise<T>) => run());
    try {
      return await locked(() => mutate(pool, mutation.requestId, 'addon.create', async (tx) => {
        const ref = await resolveApp(tx, principal, appName, true);
        const addon = await insertAddon(tx, ref, { name, kind: driver.kind, state: made.state, configVar: driver.configVar, plan: made.plan, secret: made.secret });
        if (made.configValue !== undefined) {
          await changeConfigVars(tx, ref, { [driver.configVar]: made.configValue }, [], principal.ownerId, mutation.claim);
        }
        await appendEvent(tx, 'addon.created', ref.name, { name, kind: driver.kind });
        await driver.onCreated?.(tx, addon);
        return this.view(addon);
      }, { store: (view) => view, replay: (stored) => stored as AddonView }));
    } finally {
      // Whatever happened (an error, a lost COMMIT, a duplicate request answered from the first), the resource stays
      // only if its row is there.
      await this.dropUnlessRecorded(driver, remains);
    }
  }

  /**
   * Detaches an add-on: one transaction marks it 'destroying' (off the app) and unsets its config var (a new
   * release), then the kind removes the resource and the row goes; what fails there is retried by the leader.
   */
  async destroy(principal: Principal, appName: string, name: string, mutation: AddonMutation = {}): Promise<AddonView> {
    const { pool } = this.options;
    const locked = mutation.locked ?? (<T>(run: () => Promise<T>) => run());
    const detached = await locked(() => mutate(pool, mutation.requestId, 'addon.destroy', async (tx) => {
      const ref = await resolveApp(tx, principal, appName, true);
      const addon = await getAddon(tx, ref, name, true);
      await markAddonDestroying(tx, addon.id);
      // Unset unless the owner has since put another value there (one without this add-on's secret in it).
      const current = (await getConfigVars(tx, ref))[addon.configVar];
      if (current !== undefined && current.includes(encodeURIComponent(addon.secret))) {
        await changeConfigVars(tx, ref, {}, [addon.configVar], principal.ownerId, mutation.claim);
      }
      await appendEvent(tx, 'addon.destroyed', ref.name, { name: addon.name, kind: addon.kind });
      await this.options.kinds.get(addon.kind)?.onDestroying?.(tx, addon);
      return { id: addon.id, view: this.view(addon, 'destroying') };
    }, { store: (r) => r, replay: (stored) => stored as { id: number; view: AddonView } }));
    const removed = await this.removeOne(detached.id);
    return removed ? { ...detached.view, state: 'destroyed' } : detached.view;
  }

  /**
   * Removes every add-on left 'destroying' whose kind this nexus drives, and what creates that died midway left (each
   * kind's sweep); one pass at a time in this process.
   */
  reap(): Promise<void> {
    const pass = this.reaping.then(async () => {
      for (const addon of await listDestroyingAddons(this.options.pool)) await this.removeRow(addon);
      for (const driver of this.options.kinds.values()) {
        await driver.sweep?.().catch((err: unknown) => this.log.warn({ err, kind: driver.kind }, 'add-on sweep failed; the leader retries'));
      }
    });
    this.reaping = pass.catch(() => undefined);
    return pass;
  }

  /** Removes one 'destroying' add-on by id (after addons:destroy); false when it is left for the leader's retry. */
  private async removeOne(id: number): Promise<boolean> {
    const pass = this.reaping.then(async () => {
      const addon = (await listDestroyingAddons(this.options.pool)).find((a) => a.id === id);
      return addon === undefined ? true : this.removeRow(addon);
    });
    this.reaping = pass.then(() => undefined, () => undefined);
    return pass;
  }

  private async removeRow(addon: Addon): Promise<boolean> {
    const driver = this.options.kinds.get(addon.kind);
    if (!driver) return false; // another nexus (one that offers the kind) removes it
    try {
      if ((await driver.remove(addon)) === 'pending') return false;
      await deleteDestroyedAddon(this.options.pool, addon.id);
      this.log.info({ addon: addon.name, kind: addon.kind, app: addon.appName }, 'add-on removed');
      return true;
    } catch (err) {
      this.log.warn({ err, addon: addon.name, kind: addon.kind }, 'cannot remove add-on yet; the leader retries');
      return false;
    }
  }

  private async dropUnlessRecorded(driver: AddonKindDriver, remains: AddonRemains): Promise<void> {
    try {
      if (await findAddonByName(this.options.pool, remains.name)) return;
      await driver.remove(remains);
    } catch (err) {
      this.log.error({ err, addon: remains.name, kind: remains.kind, plan: remains.plan }, 'cannot remove an add-on whose row was not written; remove it by hand');
    }
  }

  private async freshName(kind: AddonKind): Promise<string> {
    for (let attempt = 0; attempt < 8; attempt++) {
      const name = addonName(kind);
      if (!(await isAddonNameTaken(this.options.pool, name))) return name;
    }
    throw new ConflictError('no free add-on name was found; try again');
  }
}

/** The leader's retry of add-ons left 'destroying'. */
export class AddonReaper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(private readonly options: { service: AddonService; isLeader: () => boolean; intervalMs: number; log: Logger }) {}

  start(): void {
    this.timer = setInterval(() => this.tick(), this.options.intervalMs);
    this.timer.unref();
  }

  /** One pass now (when leader and none is running). */
  tick(): Promise<void> | undefined {
    if (!this.options.isLeader() || this.running) return this.running;
    this.running = this.options.service.reap()
      .catch((err: unknown) => this.options.log.warn({ err }, 'add-on reaping failed'))
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
