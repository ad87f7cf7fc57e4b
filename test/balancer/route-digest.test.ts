import { describe, expect, it } from 'vitest';
import { HELD_MAX_MS, RouteTable } from '../../src/balancer/route-table.js';
import { routeDigest, routesOfSnapshot, type App, type Instance, type Snapshot, type StateEvent } from '../../src/protocol/index.js';

function app(name: string, hostnames: string[] = []): App {
  return { name, owner: 'admin', webScale: 1, hostnames, createdAt: 0 };
}

function instance(id: string, appName: string, overrides: Partial<Instance> = {}): Instance {
  return { id, app: appName, release: 1, isLive: true, processType: 'web', runnerId: 'runner-1', host: '127.0.0.1', port: 20000 + Number(id.replace(/\D/g, '')), state: 'ready', ...overrides };
}

function snapshot(apps: App[], instances: Instance[], version: number): Snapshot {
  return { version, apps, nodes: [], instances };
}

const digestOf = (table: RouteTable): string => routeDigest(table.routes());
const stateDigest = (s: Snapshot): string => routeDigest(routesOfSnapshot(s));

describe('route digest', () => {
  it('is the same for a table kept current by events and for the state at that version, and differs on drift', () => {
    const table = new RouteTable({ domain: 'pier.test' });
    const start = snapshot([app('blog', ['www.blog.com']), app('shop')], [instance('i1', 'blog'), instance('i2', 'shop', { state: 'starting', port: null })], 10);
    table.load(start);
    expect(digestOf(table)).toBe(stateDigest(start));

    const events: StateEvent[] = [
      { version: 11, type: 'instance.changed', app: 'shop', data: instance('i2', 'shop') as unknown as Record<string, unknown>, at: 0 },
      { version: 12, type: 'host.added', app: 'shop', data: { hostname: 'shop.example.com' }, at: 0 },
      { version: 13, type: 'instance.changed', app: 'blog', data: instance('i3', 'blog', { release: 2, isLive: false }) as unknown as Record<string, unknown>, at: 0 },
      { version: 14, type: 'release.live', app: 'blog', data: { release: 2 }, at: 0 },
      { version: 15, type: 'instance.removed', app: 'blog', data: { id: 'i1' }, at: 0 },
    ];
    for (const event of events) table.apply(event);
    const now = snapshot(
      [app('shop', ['shop.example.com']), app('blog', ['www.blog.com'])], // another order: the digest sorts
      [instance('i3', 'blog', { release: 2 }), instance('i2', 'shop')],
      15,
    );
    expect(digestOf(table)).toBe(stateDigest(now));
    // A host the state has and the table lacks, a moved port, a backend too many: each changes the digest.
    expect(stateDigest(snapshot([app('shop', ['shop.example.com', 'x.example.com']), app('blog', ['www.blog.com'])], now.instances, 15))).not.toBe(digestOf(table));
    expect(stateDigest(snapshot(now.apps, [instance('i3', 'blog', { release: 2, port: 1 }), instance('i2', 'shop')], 15))).not.toBe(digestOf(table));
    expect(stateDigest(snapshot(now.apps, [...now.instances, instance('i4', 'blog', { release: 2 })], 15))).not.toBe(digestOf(table));
  });
});

describe('RouteTable held backends', () => {
  it('keeps serving instances the state forgot while it offers no other, and only then; the digest follows the state', () => {
    const table = new RouteTable({ domain: 'pier.test' });
    table.load(snapshot([app('blog')], [instance('i1', 'blog'), instance('i2', 'blog')], 10));
    const ids = (): string[] => table.route('blog')!.backends.map((b) => b.id);
    // One forgotten, one left: nothing held.
    table.apply({ version: 11, type: 'instance.removed', app: 'blog', data: { id: 'i1', forgotten: true }, at: 0 });
    expect(ids()).toEqual(['i2']);
    // The last one forgotten (its runner declared dead): still tried, but the digest says what the state says.
    table.apply({ version: 12, type: 'instance.removed', app: 'blog', data: { id: 'i2', forgotten: true }, at: 0 });
    expect(ids()).toEqual(['i2']);
    expect(digestOf(table)).toBe(stateDigest(snapshot([app('blog')], [], 12)));
    // A starting replacement changes nothing; a ready one replaces the held backend.
    table.apply({ version: 13, type: 'instance.changed', app: 'blog', data: instance('i3', 'blog', { state: 'starting', port: null }) as unknown as Record<string, unknown>, at: 0 });
    expect(ids()).toEqual(['i2']);
    // A snapshot reload meanwhile keeps holding it.
    table.load(snapshot([app('blog')], [instance('i3', 'blog', { state: 'starting', port: null })], 13));
    expect(ids()).toEqual(['i2']);
    table.apply({ version: 14, type: 'instance.changed', app: 'blog', data: instance('i3', 'blog') as unknown as Record<string, unknown>, at: 0 });
    expect(ids()).toEqual(['i3']);
    // A stopped instance (out of rotation first) is never held.
    table.apply({ version: 15, type: 'instance.changed', app: 'blog', data: instance('i3', 'blog', { state: 'stopping' }) as unknown as Record<string, unknown>, at: 0 });
    table.apply({ version: 16, type: 'instance.removed', app: 'blog', data: { id: 'i3' }, at: 0 });
    expect(ids()).toEqual([]);
  });
});

describe('RouteTable held backends let go before their port can be free', () => {
  const forget = (version: number, id: string): StateEvent => ({ version, type: 'instance.removed', app: 'blog', data: { id, forgotten: true }, at: 0 });

  it('drops a held backend when its own runner says its vassal stops (instance.released), not on a stranger\'s word', () => {
    const table = new RouteTable({ domain: 'pier.test' });
    table.load(snapshot([app('blog'), app('shop')], [instance('i1', 'blog'), instance('i2', 'shop')], 10));
    table.apply(forget(11, 'i1'));
    expect(table.heldBackends('blog').map((b) => b.id)).toEqual(['i1']);
    // Another runner, an unknown id, a malformed event: nothing changes.
    expect(table.apply({ version: 12, type: 'instance.released', app: 'blog', data: { id: 'i1', runnerId: 'runner-2' }, at: 0 })).toBe(false);
    expect(table.apply({ version: 13, type: 'instance.released', app: 'blog', data: { id: 'i9', runnerId: 'runner-1' }, at: 0 })).toBe(false);
    expect(table.apply({ version: 14, type: 'instance.released', app: 'blog', data: { id: 'i1' }, at: 0 })).toBe(false);
    expect(table.invalidEvents).toBe(1);
    expect(table.route('blog')!.backends.map((b) => b.id)).toEqual(['i1']);
    expect(table.apply({ version: 15, type: 'instance.released', app: 'blog', data: { id: 'i1', runnerId: 'runner-1' }, at: 0 })).toBe(true);
    expect(table.route('blog')!.backends).toEqual([]);
    expect(table.heldBackends('blog')).toEqual([]);
    expect(table.addresses().has('127.0.0.1:20001')).toBe(false);
    // A later snapshot does not bring it back, and the other app was never touched.
    table.load(snapshot([app('blog'), app('shop')], [instance('i2', 'shop')], 16));
    expect(table.route('blog')!.backends).toEqual([]);
    expect(table.route('shop')!.backends.map((b) => b.id)).toEqual(['i2']);
  });

  it('holds a forgotten backend HELD_MAX_MS at most, counted from the forget, also across a snapshot reload', () => {
    let now = 1_000_000;
    const table = new RouteTable({ domain: 'pier.test', now: () => now });
    table.load(snapshot([app('blog')], [instance('i1', 'blog')], 10));
    table.apply(forget(11, 'i1'));
    now += HELD_MAX_MS - 1000;
    expect(table.expireHeld()).toBe(false);
    table.load(snapshot([app('blog')], [], 11)); // reloaded meanwhile: still held, its clock not reset
    expect(table.route('blog')!.backends.map((b) => b.id)).toEqual(['i1']);
    now += 999;
    expect(table.expireHeld()).toBe(false);
    now += 1;
    expect(table.expireHeld()).toBe(true);
    expect(table.route('blog')!.backends).toEqual([]);
    // A backend held later gets its own full time.
    table.apply({ version: 12, type: 'instance.changed', app: 'blog', data: instance('i2', 'blog') as unknown as Record<string, unknown>, at: 0 });
    table.apply(forget(13, 'i2'));
    now += HELD_MAX_MS - 1;
    expect(table.expireHeld()).toBe(false);
    expect(table.route('blog')!.backends.map((b) => b.id)).toEqual(['i2']);
  });
});
