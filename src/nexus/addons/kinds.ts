/**
 * The add-on kinds the platform offers, behind one small interface: the framework (service.ts) keeps the row, the
 * config var and the release; a kind only makes, describes and removes its resource. One driver per kind:
 * postgresql.ts here; redis.ts registers itself in `addonKinds` below.
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import type { PierConfig } from '../../config/index.js';
import type { Addon, AddonKind, AppRef, Queryable } from '../../db/index.js';
import { postgresqlKind } from './postgresql.js';

/** What every driver is built with. */
export interface AddonKindDeps {
  /** The platform's database (addons rows, config vars). */
  pool: pg.Pool;
  /** The URL the nexus reaches the platform's database at (postgresql's default server). */
  platformDbUrl: string;
  config: PierConfig;
  log: Logger;
}

/** What a kind made for a new add-on, before its row exists. */
export interface ProvisionedAddon {
  /** 'ready': usable now (postgresql); 'provisioning': someone places it later (redis: the leader, on a runner). */
  state: 'ready' | 'provisioning';
  /** The kind's facts kept in addons.plan, shown by `addons:info`: never a secret. */
  plan: Record<string, unknown>;
  /** Its password, kept in addons.secret (and inside the config var's value). */
  secret: string;
  /** The config var's value to set now (a new release rolls); undefined when it is set later (redis, once placed). */
  configValue?: string;
}

/** What a kind is given to remove: a row marked 'destroying', or what provision() made when its row was never written. */
export type AddonRemains = Pick<Addon, 'name' | 'kind' | 'plan' | 'secret'> & { id?: number };

export interface AddonKindDriver {
  readonly kind: AddonKind;
  /** The config var it sets on its app, e.g. DATABASE_URL. */
  readonly configVar: string;
  /**
   * Makes the resource for a new add-on, outside any transaction of the platform's database (CREATE DATABASE cannot
   * run in one). When it throws, it has left nothing behind. Its error message is shown to the owner.
   */
  provision(request: { app: AppRef; name: string }): Promise<ProvisionedAddon>;
  /**
   * Inside the transaction that inserts the row (and sets the config var when `configValue` was given): e.g. an event
   * that wakes the leader to place it. Optional.
   */
  onCreated?(tx: Queryable, addon: Addon): Promise<void>;
  /** Inside the transaction that marks the row 'destroying' (addons:destroy; not apps:destroy). Optional. */
  onDestroying?(tx: Queryable, addon: Addon): Promise<void>;
  /**
   * Removes the resource; idempotent (the leader calls it again for rows left 'destroying', e.g. a nexus killed
   * midway). 'done': gone, the framework deletes the row now; 'pending': someone else finishes and deletes the row
   * (redis: once its runner reports the server stopped). Also undoes a provision() whose row could not be written.
   */
  remove(remains: AddonRemains): Promise<'done' | 'pending'>;
  /**
   * On the leader, beside the retry of rows left 'destroying': removes what a create that died midway made without a
   * row (postgresql: a database and role nobody records). Optional.
   */
  sweep?(): Promise<void>;
  /** The kind's facts for `addons:info` and listings (no secret): e.g. server, database, role; where it runs. */
  details(addon: Addon): Record<string, unknown>;
}

/** The registry: kind name → driver. Kinds the platform cannot offer here are simply absent. */
export type AddonKinds = ReadonlyMap<AddonKind, AddonKindDriver>;

/** Every driver this nexus offers. */
export function addonKinds(deps: AddonKindDeps): AddonKinds {
  const kinds = new Map<AddonKind, AddonKindDriver>();
  kinds.set('postgresql', postgresqlKind(deps));
  return kinds;
}
