/**
 * The redis add-on kind: a dedicated Debian redis-server per app, run by a runner (placed by the leader, see
 * ../addon-placer.ts). provision() only chooses its password and plan; the row starts 'provisioning', and
 * REDIS_URL (redis://:PASSWORD@host:port/0) is set once its runner proves it answers. Removal is its runner's:
 * it stops the server and reports, and the row goes then (or at once when it never ran anywhere).
 */
import { randomBytes } from 'node:crypto';
import { findAddonByName, REDIS_CONFIG_VAR, type Addon } from '../../db/index.js';
import type { AddonKindDeps, AddonKindDriver, AddonRemains, ProvisionedAddon } from './kinds.js';

const ALPHANUMERIC = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** 32 letters and digits (~190 bits): no character needs quoting in a URL or in redis.conf. */
export function redisPassword(): string {
  const bytes = randomBytes(64);
  let out = '';
  for (const b of bytes) {
    if (b >= 248) continue; // 248 = 62 × 4: keeps every character equally likely
    out += ALPHANUMERIC[b % 62];
    if (out.length === 32) return out;
  }
  return out.length === 32 ? out : redisPassword();
}

export function redisKind(deps: Pick<AddonKindDeps, 'pool' | 'config'>): AddonKindDriver {
  return {
    kind: 'redis',
    configVar: REDIS_CONFIG_VAR,
    async provision(): Promise<ProvisionedAddon> {
      return { state: 'provisioning', plan: { maxmemoryMb: deps.config.services.redisMaxmemoryMb }, secret: redisPassword() };
    },
    async remove(remains: AddonRemains): Promise<'done' | 'pending'> {
      const row = await findAddonByName(deps.pool, remains.name);
      // Never placed (or its runner already reported it stopped): nothing runs anywhere.
      return !row || row.runnerId === null ? 'done' : 'pending';
    },
    details(addon: Addon): Record<string, unknown> {
      return {
        maxmemoryMb: addon.plan.maxmemoryMb,
        runner: addon.runnerId,
        address: addon.host && addon.port ? `${addon.host}:${addon.port}` : null,
        since: addon.startedAt ? addon.startedAt.toISOString() : null,
        generation: addon.generation,
        note: addon.note,
      };
    },
  };
}
