/**
 * The leader's health pass: reads every app's serving instances with their newest health, decides the ladder's
 * rungs and the alerts (remediation.ts, pure), applies them in one transaction (each an event), hands raised and
 * cleared alerts to the webhooks, and prunes old results.
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import { Coalesced } from '../core/coalesce.js';
import {
  clearAlert, hasHealthWork, loadLadderState, type LadderAppRow, lockScheduling, pruneHealth, raiseAlert, recordRung, restoreInstance, runnerLoads, withTransaction,
} from '../db/index.js';
import type { Alert } from '../protocol/index.js';
import { AlertWebhook } from './alert-webhook.js';
import { decide, type HealthAction } from './remediation.js';

export interface HealthLoopOptions {
  pool: pg.Pool;
  isLeader: () => boolean;
  /** Node id → ms of the newest heartbeat this replica received (a move goes to a live runner only). */
  lastSeen: ReadonlyMap<string, number>;
  deadAfterMs: number;
  /** How often the ladder is considered (it also runs at once when a health report turned a target). @default 500 */
  intervalMs?: number;
  /** Raw results are kept this long. @default 3600000 */
  retentionMs?: number;
  /** The platform's webhook, which gets every app's alerts. @default none */
  webhookUrl?: string;
  /** nexus.alertWebhookAllowPrivate: owners' webhooks are not guarded. @default false */
  webhookAllowPrivate?: boolean;
  webhook?: AlertWebhook;
  log: Logger;
}

/** How often old results are pruned. */
const PRUNE_EVERY_MS = 60_000;

export class HealthLoop {
  private timer: NodeJS.Timeout | undefined;
  private lastPrune = 0;
  readonly webhook: AlertWebhook;
  private readonly passes = new Coalesced(() => this.pass(), (err) => this.log.warn({ err: err.message }, 'health pass failed; will retry'));
  private readonly log: Logger;

  constructor(private readonly options: HealthLoopOptions) {
    this.log = options.log.child({ component: 'nexus.health' });
    this.webhook = options.webhook ?? new AlertWebhook({ allowPrivate: options.webhookAllowPrivate ?? false, log: options.log });
  }

  start(): void {
    this.timer = setInterval(() => this.kick(), this.options.intervalMs ?? 500);
  }

  kick(): void {
    if (this.options.isLeader()) this.passes.kick();
  }

  private async pass(): Promise<void> {
    const now = Date.now();
    const { pool } = this.options;
    // Most passes find nothing to do: decided first without the lock, then again under it when there is work.
    if ((await hasHealthWork(pool)) && (await this.plan(pool, now)).length > 0) {
      const sent: Array<{ type: 'alert.raised' | 'alert.cleared'; alert: Alert; webhook: string | null }> = [];
      const actions = await withTransaction(pool, async (tx) => {
        await lockScheduling(tx); // with the scheduler: a move's placement and a scheduling pass never interleave
        const { planned, apps } = await this.planWith(tx, Date.now());
        const webhookOf = new Map(apps.map((a) => [a.name, a.webhook]));
        for (const action of planned) {
          const alert = await this.apply(tx, action);
          if (alert) sent.push({ type: action.kind === 'raise' ? 'alert.raised' : 'alert.cleared', alert, webhook: webhookOf.get(action.app) ?? null });
        }
        return planned;
      });
      for (const action of actions) if (action.kind === 'rung' || action.kind === 'restore') this.log.info({ ...action }, 'remediation');
      for (const s of sent) {
        const body = { type: s.type, alert: s.alert };
        // The operator's URL may point anywhere; the owner's is guarded (sent once when both are the same URL).
        if (this.options.webhookUrl) this.webhook.send({ url: this.options.webhookUrl, body, isOperator: true });
        if (s.webhook && s.webhook !== this.options.webhookUrl) this.webhook.send({ url: s.webhook, body });
      }
    }
    if (now - this.lastPrune > PRUNE_EVERY_MS) {
      this.lastPrune = now;
      await pruneHealth(pool, this.options.retentionMs ?? 3_600_000);
    }
  }

  private async plan(q: pg.Pool | pg.PoolClient, now: number): Promise<HealthAction[]> {
    return (await this.planWith(q, now)).planned;
  }

  private async planWith(q: pg.Pool | pg.PoolClient, now: number): Promise<{ planned: HealthAction[]; apps: LadderAppRow[] }> {
    const { lastSeen, deadAfterMs } = this.options;
    const apps = await loadLadderState(q);
    const live = (await runnerLoads(q)).filter((r) => now - (lastSeen.get(r.id) ?? 0) < deadAfterMs);
    const planned = decide(apps, {
      now, runners: (appId) => live.map((r) => ({ id: r.id, instances: r.instances, appInstances: r.byApp.get(appId) ?? 0 })),
    });
    return { planned, apps };
  }

  private async apply(tx: pg.PoolClient, action: HealthAction): Promise<Alert | undefined> {
    switch (action.kind) {
      case 'raise':
        return raiseAlert(tx, action.app, action.instance, action.reason);
      case 'clear':
        return clearAlert(tx, action.alertId, action.why);
      case 'restore':
        await restoreInstance(tx, action.app, action.instance, action.reason);
        return undefined;
      case 'rung':
        await recordRung(tx, action.app, action.instance, action.rung, action.step, action.reason, action.toRunner);
        return undefined;
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.passes.idle();
    this.webhook.stop();
  }
}

