/** Add-ons over the JSON API (`/v1/apps/:app/addons`): request bodies, params and the public shape of one add-on. */
import { Type, type Static } from '@sinclair/typebox';

const strict = { additionalProperties: false } as const;

export { ADDON_KIND_NAMES, ADDON_NAME_PATTERN } from './patterns.js';

/** The kind is checked against the platform's drivers (an unknown or unavailable one answers 422, naming it). */
export const CreateAddonBody = Type.Object({ kind: Type.String({ minLength: 1, maxLength: 64 }) }, strict);
export type CreateAddonBody = Static<typeof CreateAddonBody>;

export const AddonParams = Type.Object({ app: Type.String({ maxLength: 64 }), name: Type.String({ maxLength: 64 }) }, strict);
export type AddonParams = Static<typeof AddonParams>;

/**
 * One add-on as owners see it: never its password (the app's config var holds the URL; `pier config` shows it).
 * `details` are the kind's own facts (postgresql: server, database, role, connectionLimit; redis: where it runs).
 */
export interface AddonView {
  name: string;
  kind: string;
  app: string;
  /** provisioning | ready | moving | destroying */
  state: string;
  /** The config var it sets on its app (DATABASE_URL, REDIS_URL). */
  configVar: string;
  /** Milliseconds since the epoch. */
  createdAt: number;
  updatedAt: number;
  details: Record<string, unknown>;
}
