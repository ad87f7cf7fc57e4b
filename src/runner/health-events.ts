/**
 * The runner's side of health events: a changed check reaches the prober; the remediation ladder's `rewrite` and
 * `restart` rungs act on the instance when this runner holds it (events arrive in version order, so a rung for an
 * instance this runner no longer holds does nothing); alerts and rungs of its instances are written to the app's log
 * as `pier:` lines.
 */
import type { Logger } from 'pino';
import type { Check, LogMessage, StateEvent } from '../protocol/index.js';
import type { IntakePusher } from '../transport/index.js';
import type { HealthProber } from './health-prober.js';
import type { InstanceManager } from './instance-manager.js';

/** Instances whose alerts were written here, so the clearing is written too (the instance may be gone by then). */
const REMEMBERED = 1000;

export class HealthEvents {
  private readonly raisedHere = new Map<string, string>();

  constructor(private readonly options: { manager: InstanceManager; prober: HealthProber; pusher: IntakePusher; log: Logger }) {}

  /** True when the event was one of ours. */
  apply(event: StateEvent): boolean {
    const { data } = event;
    switch (event.type) {
      case 'checks.changed':
        if (event.app) this.options.prober.setCheck(event.app, (data.check ?? null) as Check | null);
        return true;
      case 'remediation.rung':
        this.onRung(event.app, String(data.instance), String(data.rung), String(data.reason ?? ''));
        return true;
      case 'alert.raised':
      case 'alert.cleared':
        this.onAlert(event);
        return true;
      default:
        return false;
    }
  }

  private holds(instance: string): boolean {
    return this.options.manager.serving().some((s) => s.id === instance);
  }

  private onRung(app: string | null, instance: string, rung: string, reason: string): void {
    if (!app || !this.holds(instance)) return;
    this.logLine(app, instance, `instance ${instance}: remediation ${rung}${reason ? ` (${reason})` : ''}`);
    const { manager, log } = this.options;
    const act = rung === 'rewrite' ? manager.rewrite(instance)
      : rung === 'restart' ? (this.options.prober.pierRestarts(instance), manager.restart(instance)) : undefined;
    void act?.catch((err) => log.warn({ err, instance, rung }, 'remediation step failed'));
  }

  private onAlert(event: StateEvent): void {
    const instance = typeof event.data.instance === 'string' ? event.data.instance : null;
    if (!event.app || !instance) return;
    if (event.type === 'alert.raised') {
      if (!this.holds(instance)) return;
      this.raisedHere.set(instance, event.app);
      if (this.raisedHere.size > REMEMBERED) this.raisedHere.delete(this.raisedHere.keys().next().value!);
      this.logLine(event.app, instance, `alert raised for instance ${instance}: ${String(event.data.reason ?? '').split('\n')[0]}`);
    } else if (this.raisedHere.delete(instance)) {
      this.logLine(event.app, instance, `alert cleared for instance ${instance}${event.data.why ? `: ${String(event.data.why)}` : ''}`);
    }
  }

  private logLine(app: string, instance: string, line: string): void {
    const message: LogMessage = { v: 1, type: 'log', app, source: 'pier', origin: instance, line: line.slice(0, 2000), at: Date.now() };
    this.options.pusher.push(message);
  }
}
