/**
 * Turns an app's events and 5xx bursts into `pier explain` entries: a kind, one human line, the release version it
 * concerns. Pure (no I/O). Event types it does not know are rendered generically, so new types show up at once.
 */
import type { ExplainEntry } from '../protocol/index.js';

/** An event as the explainer reads it. */
export interface ExplainEvent {
  id: number;
  type: string;
  data: Record<string, unknown>;
  at: number;
}

/** One minute of traffic that was a 5xx burst. */
export interface BurstMinute {
  minute: number;
  requests: number;
  s5xx: number;
  p95Ms: number | null;
}

/** What the renderer needs besides the event: who uploaded each release, and what each node.down took with it. */
export interface ExplainContext {
  /** Owner name by release version. */
  creators: ReadonlyMap<number, string>;
  /** The app's instances a runner held when it went down, by node.down event id. */
  heldBy?: ReadonlyMap<number, string[]>;
}

const SUMMARY_MAX = 300;

function str(value: unknown): string {
  if (value === null || value === undefined) return '';
  return typeof value === 'string' ? value : JSON.stringify(value);
}

function num(value: unknown): number | null {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 ? value : null;
}

/** One line: newlines folded, other control characters (terminal escapes in an app's error text) dropped, long text cut. */
function line(text: string): string {
  // eslint-disable-next-line no-control-regex
  const flat = text.replace(/\s*[\r\n]+\s*/g, ' ').replace(/[\x00-\x1f\x7f-\x9f]/g, '').trim();
  return flat.length > SUMMARY_MAX ? `${flat.slice(0, SUMMARY_MAX - 1)}…` : flat;
}

function versionOfHolder(holder: unknown): number | null {
  const match = typeof holder === 'string' ? / v(\d+)$/.exec(holder) : null;
  return match ? num(Number(match[1])) : null;
}

type Rendered = { kind: string; summary: string; version: number | null };

function render(e: ExplainEvent, ctx: ExplainContext): Rendered {
  const d = e.data;
  const release = num(d.release);
  switch (e.type) {
    case 'app.created':
      return { kind: 'app', summary: `app created by ${str(d.owner) || 'an owner'}`, version: null };
    case 'release.created': {
      const version = num(d.version);
      const by = version !== null ? ctx.creators.get(version) : undefined;
      const what = str(d.description);
      return { kind: 'deploy', summary: `v${version ?? '?'} created${by ? ` by ${by}` : ''}${what ? `: ${what}` : ''}${d.stage ? ' (to stage)' : ''}`, version };
    }
    case 'release.live':
      return { kind: 'deploy', summary: `v${release ?? '?'} live: balancers route to it`, version: release };
    case 'release.staged':
      return { kind: 'deploy', summary: release === null ? 'stage slot emptied' : `v${release} staged: stage hostname routes to it`, version: release };
    case 'release.failed':
      return { kind: 'deploy', summary: `v${release ?? '?'} failed${d.stage ? ' on stage' : ''}: ${str(d.error) || 'no reason recorded'}`, version: release };
    case 'release.reverted':
      return { kind: 'verdict', summary: `v${release ?? '?'} reverted to v${str(d.previous)}: ${str(d.reason)}`, version: release };
    case 'release.verdict': {
      const p95 = typeof d.p95Ms === 'number' ? `, p95 ${Math.round(d.p95Ms)} ms` : '';
      return { kind: 'verdict', summary: `v${release ?? '?'} passed its verdict: ${str(d.requests ?? 0)} requests, ${str(d.s5xx ?? 0)} 5xx${p95}`, version: release };
    }
    case 'instance.changed': {
      const where = d.port === null || d.port === undefined ? str(d.runnerId) : `${str(d.runnerId)} (${str(d.host)}:${str(d.port)})`;
      return { kind: 'instance', summary: `${str(d.id)} ${str(d.state)} on ${where}`, version: release };
    }
    case 'instance.removed':
      return { kind: 'instance', summary: `${str(d.id)} removed`, version: null };
    case 'health.changed':
      return { kind: 'health', summary: `${str(d.instance)} ${d.healthy ? 'healthy' : 'unhealthy'}${d.reason ? `: ${str(d.reason)}` : ''}`, version: release };
    case 'alert.raised':
      return { kind: 'alert', summary: `alert ${str(d.id)} raised${d.instance ? ` for ${str(d.instance)}` : ''}: ${str(d.reason)}`, version: release };
    case 'alert.cleared':
      return { kind: 'alert', summary: `alert ${str(d.id)} cleared${d.instance ? ` for ${str(d.instance)}` : ''}${d.reason ? `: ${str(d.reason)}` : ''}`, version: release };
    case 'remediation.rung':
      return { kind: 'remediation', summary: `${str(d.instance)}: ${str(d.rung)}${d.reason ? ` (${str(d.reason)})` : ''}`, version: release };
    case 'node.down': {
      const held = ctx.heldBy?.get(e.id) ?? [];
      return { kind: 'node', summary: `${str(d.kind) || 'node'} ${str(d.id)} down${held.length ? `, it held ${held.join(', ')}` : ''}`, version: null };
    }
    case 'node.up':
      return { kind: 'node', summary: `${str(d.kind) || 'node'} ${str(d.id)} up again`, version: null };
    case 'lock.acquired':
      return { kind: 'lock', summary: `deploy lock taken by ${str(d.holder)} (token ${str(d.token)})`, version: versionOfHolder(d.holder) };
    case 'lock.released':
      return { kind: 'lock', summary: `deploy lock released (token ${str(d.token)})`, version: null };
    case 'lock.expired':
      return { kind: 'lock', summary: `deploy lock of ${str(d.holder)} expired (token ${str(d.token)})`, version: versionOfHolder(d.holder) };
    case 'config.changed':
      return { kind: 'config', summary: configSummary(d), version: null };
    case 'formation.changed':
      return { kind: 'scale', summary: `scaled ${Object.entries(d).filter(([, n]) => typeof n === 'number').map(([t, n]) => `${t}=${n}`).join(' ') || 'formation'}`, version: null };
    case 'host.added':
      return { kind: 'host', summary: `hostname ${str(d.hostname)} added`, version: null };
    case 'host.removed':
      return { kind: 'host', summary: `hostname ${str(d.hostname)} removed`, version: null };
    default: {
      // An event type this module does not know yet: its name and its data, as they are.
      const kind = e.type.split('.')[0] || 'event';
      const body = Object.keys(d).length ? ` ${JSON.stringify(d)}` : '';
      return { kind, summary: `${e.type}${body}`, version: release ?? num(d.version) };
    }
  }
}

/** Config events name keys, never values (config-vars.ts). */
function configSummary(d: Record<string, unknown>): string {
  const list = (v: unknown): string[] => (Array.isArray(v) ? v.map(str) : []);
  const set = list(d.set);
  const unset = list(d.unset);
  if (set.length || unset.length) return `config ${[set.length ? `set ${set.join(', ')}` : '', unset.length ? `unset ${unset.join(', ')}` : ''].filter(Boolean).join('; ')}`;
  const keys = list(d.keys);
  return `config replaced${keys.length ? `: ${keys.join(', ')}` : ' (now empty)'}${d.rollback !== undefined ? ` (rollback to v${str(d.rollback)})` : ''}`;
}

export function eventEntry(e: ExplainEvent, ctx: ExplainContext): ExplainEntry {
  const r = render(e, ctx);
  return { at: e.at, kind: r.kind, summary: line(r.summary), version: r.version, type: e.type, event: e.id, data: e.data };
}

export function burstEntry(b: BurstMinute): ExplainEntry {
  const percent = b.requests > 0 ? Math.round((b.s5xx / b.requests) * 1000) / 10 : 100;
  const p95 = b.p95Ms === null ? '' : `, p95 ${Math.round(b.p95Ms)} ms`;
  return {
    at: b.minute, kind: 'traffic', summary: `5xx burst: ${b.s5xx} of ${b.requests} requests (${percent}%) in this minute${p95}`,
    version: null, type: null, event: null, data: { minute: b.minute, requests: b.requests, s5xx: b.s5xx, p95Ms: b.p95Ms },
  };
}

/** Oldest first; entries at the same moment in event order, a burst (minute start) before the minute's events. */
export function byTime(a: ExplainEntry, b: ExplainEntry): number {
  return a.at - b.at || (a.event ?? 0) - (b.event ?? 0);
}
